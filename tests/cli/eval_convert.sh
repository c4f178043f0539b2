#!/bin/sh
# scripts/eval-convert.py: made-up records in each public dataset's layout
# (tests/data/eval/convert) convert to the hand-checked JSONL in expected/,
# which `rgemma eval --check` accepts; a broken input names its line.
set -e
export OMP_NUM_THREADS=1 # tiny models: more threads only add overhead
T=$(mktemp -d /tmp/rgemma-cli-convert.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
command -v python3 >/dev/null || fail "python3 is needed (make deps installs it)"
D=tests/data/eval/convert
for ds in mmlu hellaswag piqa siqa boolq winogrande commonsenseqa openbookqa arc triviaqa nq gsm8k; do
    case $ds in
    mmlu) in="$D/mmlu_hf.jsonl $D/high_school_biology_dev.csv" ;;
    triviaqa) in=$D/triviaqa.json ;;
    *) in=$D/$ds.jsonl ;;
    esac
    python3 scripts/eval-convert.py $ds $in -o "$T/$ds.jsonl" 2>"$T/err" || fail "$ds: $(cat "$T/err")"
    cmp -s "$T/$ds.jsonl" "$D/expected/$ds.jsonl" || fail "$ds differs: $(diff "$T/$ds.jsonl" "$D/expected/$ds.jsonl")"
    "$RGEMMA" eval --check --task "$T/$ds.jsonl" >"$T/check" 2>"$T/err" || fail "$ds: rgemma rejects it: $(cat "$T/err")"
done
python3 scripts/eval-convert.py winogrande $D/winogrande.jsonl 2>"$T/err" >/dev/null
grep -q "1 items, 1 unlabelled skipped" "$T/err" || fail "unlabelled rows are counted: $(cat "$T/err")"
printf '{"goal": "x", "sol1": "a", "sol2": "b", "label": 0}\n{"goal": "y", "sol1": "a"}\n' >"$T/bad.jsonl"
python3 scripts/eval-convert.py piqa "$T/bad.jsonl" >/dev/null 2>"$T/err" && fail "a record without sol2 must fail"
grep -q "bad.jsonl:2: cannot convert" "$T/err" || fail "bad record: $(cat "$T/err")"
exit 0
