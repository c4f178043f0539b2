#!/bin/sh
# rgemma generate --parallel N: N samples of one prompt (processed once, its
# state copied, the N sequences decoded together). Greedy: every sample is the
# plain greedy output. Seeded sampling (penalties on): sample i is the plain
# run with seed+i. JSON output, ids prompts, and one-line errors for bad N.
set -e
export OMP_NUM_THREADS=1 # tiny models: more threads only add overhead
T=$(mktemp -d /tmp/rgemma-cli-parallel.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. tests/cli/lib/small_model.sh
small_model "$T/m" || fail "synth"
M="$T/m"

# sample I of a text run: the lines after its header, up to the next header
sample() { # $1 = file, $2 = index
    python3 -c "
import re, sys
parts = re.split(r'^--- sample \d+ \(seed \d+, stop: [a-z ]+\) ---\n', open(sys.argv[1], encoding='utf-8', errors='replace').read(), flags=re.M)
sys.stdout.write(parts[int(sys.argv[2]) + 1])" "$1" "$2"
}

G="-n 16 --temp 0 --ignore-eos"
"$RGEMMA" generate -m "$M" -p "The license" $G >"$T/plain" 2>/dev/null || fail "plain greedy"
"$RGEMMA" generate -m "$M" -p "The license" $G --parallel 4 >"$T/par" 2>"$T/err" || fail "parallel: $(cat "$T/err")"
[ "$(grep -c '^--- sample ' "$T/par")" -eq 4 ] || fail "4 headers: $(cat "$T/par")"
for i in 0 1 2 3; do
    sample "$T/par" $i >"$T/s$i"
    cmp -s "$T/s$i" "$T/plain" || fail "greedy sample $i: '$(cat "$T/s$i")' vs '$(cat "$T/plain")'"
done
grep -q "^generated: *64 tokens .*tok/s aggregate" "$T/err" || fail "aggregate report: $(cat "$T/err")"

# seeded sampling with penalties: sample i == plain run with seed 42+i
S="-n 24 --ignore-eos --temp 1.1 --top-k 0 --top-p 1 --min-p 0 --repeat-penalty 1.3 --presence-penalty 0.4"
"$RGEMMA" generate -m "$M" -p "Hello there" $S -s 42 --parallel 3 >"$T/par" 2>"$T/err" || fail "sampling: $(cat "$T/err")"
for i in 0 1 2; do
    "$RGEMMA" generate -m "$M" -p "Hello there" $S -s $((42 + i)) >"$T/plain$i" 2>/dev/null || fail "plain seed $((42 + i))"
    sample "$T/par" $i >"$T/s$i"
    cmp -s "$T/s$i" "$T/plain$i" || fail "seed $((42 + i)): '$(cat "$T/s$i")' vs '$(cat "$T/plain$i")'"
    grep -q "^--- sample $i (seed $((42 + i)), " "$T/par" || fail "header of sample $i: $(cat "$T/par")"
done
cmp -s "$T/plain0" "$T/plain1" && fail "seeds 42 and 43 gave the same text"

# JSON: index, text (without the prompt), tokens, finish_reason, seed
"$RGEMMA" generate -m "$M" -p "Hello there" $S -s 42 --parallel 3 --json >"$T/json" 2>"$T/err" || fail "json: $(cat "$T/err")"
"$RGEMMA" generate -m "$M" -p "Hello there" $S -s 43 --no-display-prompt >"$T/plain1" 2>/dev/null
python3 - "$T/json" "$T/plain1" <<'PY' || fail "JSON: $(cat "$T/json")"
import json, sys
a = json.load(open(sys.argv[1]))
assert [x["index"] for x in a] == [0, 1, 2] and [x["seed"] for x in a] == [42, 43, 44]
assert all(x["finish_reason"] == "length" and len(x["tokens"]) == 24 for x in a)
assert a[1]["text"] + "\n" == open(sys.argv[2], encoding="utf-8", errors="replace").read()
PY

# ids in, ids out (the golden model has no tokenizer)
IDS=2,104,181,188,384
"$RGEMMA" generate -m tests/data/golden/dev_4layer --prompt-ids $IDS $G >"$T/plain" 2>/dev/null || fail "ids plain"
"$RGEMMA" generate -m tests/data/golden/dev_4layer --prompt-ids $IDS $G --parallel 2 >"$T/par" 2>"$T/err" \
    || fail "ids parallel: $(cat "$T/err")"
sample "$T/par" 1 >"$T/s1"
cmp -s "$T/s1" "$T/plain" || fail "ids: '$(cat "$T/s1")' vs '$(cat "$T/plain")'"
# a one-token prompt has nothing to process before the samples start
"$RGEMMA" generate -m tests/data/golden/dev_4layer --prompt-ids 2 $G >"$T/plain" 2>/dev/null
"$RGEMMA" generate -m tests/data/golden/dev_4layer --prompt-ids 2 $G --parallel 2 >"$T/par" 2>/dev/null || fail "1 token"
sample "$T/par" 0 >"$T/s0"
cmp -s "$T/s0" "$T/plain" || fail "one-token prompt: '$(cat "$T/s0")' vs '$(cat "$T/plain")'"

# bad input: one line on stderr, non-zero exit
one_line_error() { # $1 = expected text; the rest = command
    w=$1
    shift
    if "$@" >/dev/null 2>"$T/err"; then fail "accepted: $*"; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "$*: expected one line, got: $(cat "$T/err")"
    grep -q "^rgemma: generate: .*$w" "$T/err" || fail "$*: expected '$w', got: $(cat "$T/err")"
}
for n in 0 -1 257 100000 x ""; do
    one_line_error "--parallel must be" "$RGEMMA" generate -m "$M" -p "a" -n 2 --parallel "$n"
done
one_line_error "--json needs --parallel" "$RGEMMA" generate -m "$M" -p "a" -n 2 --json
one_line_error "--save-state cannot" "$RGEMMA" generate -m "$M" -p "a" -n 2 --parallel 2 --save-state "$T/s"
one_line_error "random-seed" "$RGEMMA" generate -m "$M" -p "a" -n 2 --parallel 2 -s 4294967294
echo "generate parallel: ok"
