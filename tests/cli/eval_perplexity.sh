#!/bin/sh
# rgemma perplexity on the golden model dev_4layer with the golden token ids:
# the numbers equal the same math applied to the reference logits
# (logits_full.bin: PPL 1182429.395 +/- 828346.445 over 47 tokens; the first
# 16-token window alone 847095.71), and bad input is a one-line error.
set -e
export OMP_NUM_THREADS=1 # tiny models: more threads only add overhead
T=$(mktemp -d /tmp/rgemma-cli-ppl.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=tests/data/golden/dev_4layer
IDS=tests/data/eval/dev4_tokens.txt
# close(got, want, relative tolerance)
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t * (b < 0 ? -b : b)) }'; }

"$RGEMMA" perplexity -m $M -f $IDS --ids -c 0 >"$T/out" 2>"$T/err" || fail "perplexity: $(cat "$T/err")"
grep -q "^\[1\]" "$T/out" || fail "no running value: $(cat "$T/out")"
ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\)$/\1/p' "$T/out")
err=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\)$/\2/p' "$T/out")
[ -n "$ppl" ] || fail "no final line: $(cat "$T/out")"
# logits within 5e-4 move the mean nll by at most 1e-3: PPL by 0.1%
close "$ppl" 1182429.395 1e-3 || fail "PPL $ppl, reference 1182429.395"
close "$err" 828346.445 1e-2 || fail "stderr $err, reference 828346.445"
grep -q "47 tokens" "$T/err" || fail "scored count: $(cat "$T/err")"

"$RGEMMA" perplexity -m $M -f $IDS --ids -c 16 --stride 8 --json >"$T/json" 2>"$T/err" || fail "json: $(cat "$T/err")"
grep -q '"scored":[[:space:]]*47,' "$T/json" || fail "every token from 1 on is scored once: $(cat "$T/json")"
grep -q '"windows":[[:space:]]*5,' "$T/json" || fail "5 windows: $(cat "$T/json")"
first=$(sed -n 's/^\[1\]\([0-9.]*\),.*/\1/p' "$T/err")
close "$first" 847095.71 1e-3 || fail "first window $first, reference 847095.71"

# bad input: one line, non-zero exit
"$RGEMMA" perplexity -m $M -f "$T/none" --ids 2>"$T/err" && fail "a missing file must fail"
grep -q "^rgemma: perplexity: .*cannot open" "$T/err" || fail "missing file: $(cat "$T/err")"
printf '2 5 x 7\n' >"$T/bad"
"$RGEMMA" perplexity -m $M -f "$T/bad" --ids 2>"$T/err" && fail "a non-number must fail"
grep -q "byte 4: expected a token id" "$T/err" || fail "bad id: $(cat "$T/err")"
printf '2 5 512 7\n' >"$T/big"
"$RGEMMA" perplexity -m $M -f "$T/big" --ids -c 0 2>"$T/err" && fail "an id outside the vocabulary must fail"
grep -q "outside the vocabulary" "$T/err" || fail "big id: $(cat "$T/err")"
"$RGEMMA" perplexity -m $M -f $IDS --ids -c 8 --stride 9 2>"$T/err" && fail "stride > ctx must fail"
grep -q "^rgemma: perplexity: --stride" "$T/err" || fail "stride: $(cat "$T/err")"
"$RGEMMA" perplexity -m $M -f $IDS --ids -c 1 2>"$T/err" && fail "-c 1 must fail"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "errors are one line: $(cat "$T/err")"
echo "eval_perplexity: ok"
exit 0
