#!/bin/sh
# rgemma generate --temp 0 reproduces the reference's greedy tokens on every
# golden case (f32 weights and bf16 weights), exactly.
set -e
fail() { echo "FAIL: $*"; exit 1; }
roots="tests/data/golden"
if [ -d "$RGEMMA_SHARED/testdata/golden" ]; then
    roots="$roots $RGEMMA_SHARED/testdata/golden"
else
    echo "note: $RGEMMA_SHARED/testdata/golden not found; checking the project's golden cases only"
fi
n=0
for root in $roots; do
    for case in "$root"/*/; do
        [ -f "$case/golden.json" ] || continue
        for run in greedy:model.safetensors greedy_bf16w:model-bf16.safetensors; do
            key=${run%%:*}
            weights=${run#*:}
            [ -f "$case/$weights" ] || fail "$case: $weights missing"
            prompt=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['$key']['prompt'])))" "$case/golden.json")
            want=$(python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['$key']['generated'])))" "$case/golden.json")
            count=$(echo "$want" | tr ',' '\n' | wc -l)
            got=$("$RGEMMA" generate -m "$case/$weights" --prompt-ids "$prompt" -n "$count" --temp 0 --ignore-eos 2>/dev/null) \
                || fail "$case ($key): generate failed"
            [ "$got" = "$want" ] || fail "$case ($key): got $got, want $want"
            n=$((n + 1))
        done
    done
done
[ "$n" -ge 6 ] || fail "only $n greedy runs found"
echo "greedy tokens exact on $n runs"
