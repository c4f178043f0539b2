#!/bin/sh
# rgemma eval, generation on the golden model dev_4layer with the hand-checked
# items of tests/data/eval/dev4_gen.jsonl (greedy continuations of golden.json's
# greedy prompt): em = nm = 66.67 over 3 items, and with 3 greedy samples
# maj@3 = 66.67, the same with and without state reuse.
set -e
export OMP_NUM_THREADS=1 # tiny models: more threads only add overhead
T=$(mktemp -d /tmp/rgemma-cli-evalgen.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=tests/data/golden/dev_4layer
TASK=tests/data/eval/dev4_gen.jsonl
for mode in "" --no-reuse; do
    "$RGEMMA" eval -m $M --task $TASK --samples 3 $mode --items "$T/items" >"$T/md" 2>"$T/err" \
        || fail "eval $mode: $(cat "$T/err")"
    grep -q "^| dev4_gen | em | 66.67 | 3 | 33.33 |$" "$T/md" || fail "em $mode: $(cat "$T/md")"
    grep -q "^| dev4_gen | nm | 66.67 | 3 | 33.33 |$" "$T/md" || fail "nm $mode: $(cat "$T/md")"
    grep -q "^| dev4_gen | maj@3 | 66.67 | 3 | 33.33 |$" "$T/md" || fail "maj@3 $mode: $(cat "$T/md")"
    grep -q '"outputs":\["428 125 492 449 474 329",' "$T/items" || fail "greedy tokens: $(cat "$T/items")"
done
# one sample: no maj row (maj@1 is nm)
"$RGEMMA" eval -m $M --task $TASK >"$T/md" 2>"$T/err" || fail "eval: $(cat "$T/err")"
grep -q "maj@" "$T/md" && fail "maj@1 is not a separate row: $(cat "$T/md")"
# text options on an ids item are refused at parse time, with the line
printf '{"prompt_ids": [2, 5], "answers_ids": [[3]], "stop": ["x"]}\n' >"$T/bad.jsonl"
"$RGEMMA" eval -m $M --task "$T/bad.jsonl" 2>"$T/err" && fail "stop strings on an ids item must fail"
grep -q "bad.jsonl:1: \"stop\" holds strings" "$T/err" || fail "stop: $(cat "$T/err")"
exit 0
