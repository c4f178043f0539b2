#!/bin/sh
# rgemma eval, multiple choice on the golden model dev_4layer with the
# hand-checked items of tests/data/eval/dev4_mc.jsonl (expected values in its
# header, from the reference logits): acc 50.00, acc_norm 75.00 over 4 items,
# the same with and without state reuse and one at a time or batched (--batch);
# malformed lines name their line.
set -e
export OMP_NUM_THREADS=1 # tiny models: more threads only add overhead
T=$(mktemp -d /tmp/rgemma-cli-evalmc.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=tests/data/golden/dev_4layer
TASK=tests/data/eval/dev4_mc.jsonl

for mode in "" --no-reuse "--batch 1" "--batch 3"; do
    "$RGEMMA" eval -m $M --task $TASK $mode --no-progress --items "$T/items$mode" --json "$T/r$mode.json" \
        >"$T/md$mode" 2>"$T/err" || fail "eval $mode: $(cat "$T/err")"
    grep -q "^| Benchmark | Metric | Score | n | stderr |$" "$T/md$mode" || fail "table header: $(cat "$T/md$mode")"
    grep -q "^| dev4_mc | acc | 50.00 | 4 | 28.87 |$" "$T/md$mode" || fail "acc $mode: $(cat "$T/md$mode")"
    grep -q "^| dev4_mc | acc_norm | 75.00 | 4 | 25.00 |$" "$T/md$mode" || fail "acc_norm $mode: $(cat "$T/md$mode")"
done
grep -q '"state_reuse":[[:space:]]*false' "$T/r--no-reuse.json" || fail "report says reuse off"
grep -q '"batch":[[:space:]]*8,' "$T/r.json" || fail "default batch 8: $(cat "$T/r.json")"
grep -q '"batch":[[:space:]]*3,' "$T/r--batch 3.json" || fail "batch 3 in the report"
# batched and one-at-a-time: the same predictions and greedy flags, log-likelihoods
# within 1e-4 per token (float rounding of the batched kernels; see test_eval.c)
python3 - "$T/items--batch 1" "$T/items" "$T/items--batch 3" <<'PY' || fail "batched items differ from sequential"
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
for path in sys.argv[2:]:
    got = [json.loads(l) for l in open(path)]
    assert len(got) == len(ref) == 4, path
    for a, b in zip(ref, got):
        for k in ("pred", "pred_norm", "greedy", "n_tokens", "acc", "acc_norm"):
            assert a[k] == b[k], (path, a["id"], k)
        for x, y, n in zip(a["ll"], b["ll"], a["n_tokens"]):
            assert abs(x - y) <= 1e-4 * n, (path, a["id"], x, y)
PY
for bad in 0 -2 257 x; do
    "$RGEMMA" eval -m $M --task $TASK --batch "$bad" 2>"$T/err" && fail "--batch $bad must fail"
    grep -q "^rgemma: eval: --batch" "$T/err" || fail "--batch $bad: $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "one line: $(cat "$T/err")"
done
# item "a": the single-token choice 18 has log p = -0.14507 in the reference logits
grep -q '"id":"a".*"ll":\[-36.198[0-9]*,-0.1450[0-9]*,-25.843[0-9]*\]' "$T/items" || fail "items: $(head -1 "$T/items")"
[ "$(wc -l <"$T/items")" -eq 4 ] || fail "one line per item"

"$RGEMMA" eval -m $M --task $TASK --limit 2 --by-group --json - >"$T/lim" 2>"$T/err" || fail "limit: $(cat "$T/err")"
grep -q '"n":[[:space:]]*2,' "$T/lim" || fail "--limit 2: $(cat "$T/lim")"
grep -q '"g1"' "$T/lim" || fail "groups in the JSON report"

# few-shot with token ids: the shots' ids are prepended, once per group
printf '{"group":"g1","context_ids":[2,40],"choices_ids":[[41],[43]],"label":0}\n' >"$T/shots"
"$RGEMMA" eval -m $M --task $TASK --shots "$T/shots" -k 1 --json - >"$T/fs" 2>"$T/err" || fail "shots: $(cat "$T/err")"
grep -q '"num_shots":[[:space:]]*1,' "$T/fs" || fail "num_shots: $(cat "$T/fs")"

# malformed input: FILE:LINE in one line, non-zero exit
{ head -8 $TASK; echo '{"context_ids": [2, 3], "choices_ids": [[1], [2]], "label": 0'; } >"$T/bad.jsonl"
"$RGEMMA" eval -m $M --task "$T/bad.jsonl" 2>"$T/err" && fail "malformed JSON must fail"
grep -q "^rgemma: eval: $T/bad.jsonl:9: invalid JSON" "$T/err" || fail "malformed: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "one line: $(cat "$T/err")"
{ head -9 $TASK; echo '{"context_ids": [2, 3], "choices_ids": [[1], [2]], "label": 5}'; } >"$T/bad2.jsonl"
"$RGEMMA" eval -m $M --task "$T/bad2.jsonl" 2>"$T/err" && fail "bad label must fail"
grep -q ":10: \"label\" must be an integer from 0 to 1" "$T/err" || fail "label: $(cat "$T/err")"
echo '{"context_ids": [2, 3], "choices_ids": [[1], [600]], "label": 0}' >"$T/bad3.jsonl"
"$RGEMMA" eval -m $M --task "$T/bad3.jsonl" 2>"$T/err" && fail "an id outside the vocabulary must fail"
grep -q "bad3.jsonl: line 1: .*outside the vocabulary" "$T/err" || fail "vocab: $(cat "$T/err")"
"$RGEMMA" eval -m $M --task $TASK -k 3 2>"$T/err" && fail "-k without --shots must fail"
grep -q "needs --shots" "$T/err" || fail "-k: $(cat "$T/err")"
"$RGEMMA" eval -m $M --task $TASK --extract '([' 2>"$T/err" && fail "a bad regex must fail"
grep -q "regular expression" "$T/err" || fail "regex: $(cat "$T/err")"
exit 0
