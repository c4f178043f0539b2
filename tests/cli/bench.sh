#!/bin/sh
# rgemma bench: every requested row in the markdown table and in the JSON,
# each with a roofline fraction; bad options and models are refused.
set -e
T=$(mktemp -d /tmp/rgemma-cli-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=tests/data/golden/dev_4layer

"$RGEMMA" bench -m "$M" -p 16 -n 4 -d 0,20 -r 2 >"$T/md" 2>"$T/err" || fail "bench: $(cat "$T/err")"
grep -q "^measured: memory read [0-9.]*-[0-9.]* GB/s (.*); peak f32 FMA [0-9.]* GFLOP/s" "$T/md" || fail "no machine line: $(cat "$T/md")"
for t in "pp16" "tg4" "tg4 @ d20"; do
    grep -q "^| dev_4layer | F32 | [0-9.]* GB | [0-9]* | $t | [0-9.]* ± [0-9.]* | [0-9]*% of " "$T/md" \
        || fail "row $t missing or malformed: $(cat "$T/md")"
done
[ "$(grep -c '^| dev_4layer' "$T/md")" -eq 3 ] || fail "expected 3 rows"
[ "$(grep -c '^| dev_4layer .* | tg4.* | [0-9]*% of [0-9.]* t/s ([0-9.]* of [0-9.]* GB/s) |' "$T/md")" -eq 2 ] \
    || fail "tg rows without their stream rate: $(cat "$T/md")"
grep -q "depth 20: 20 tokens processed" "$T/err" || fail "the depth was not filled: $(cat "$T/err")"

"$RGEMMA" bench -m "$M" -p 8 -n 2 -d 0 -r 1 -o json >"$T/json" 2>/dev/null || fail "bench -o json"
grep -q '"read_bandwidth_bytes_per_s"' "$T/json" || fail "json: no bandwidth"
grep -q '"weight_stream_bytes_per_s"' "$T/json" || fail "json: no weight stream rate"
[ "$(grep -c '"roofline_fraction"' "$T/json")" -eq 2 ] || fail "json: expected 2 results: $(cat "$T/json")"
grep -q '"test":[[:space:]]*"pp8"' "$T/json" || fail "json: no pp8 row"

"$RGEMMA" bench -m /nonexistent -p 8 -n 0 2>"$T/err" && fail "a missing model must fail"
grep -q "^rgemma: bench: /nonexistent" "$T/err" || fail "missing model message: $(cat "$T/err")"
"$RGEMMA" bench -m "$M" -o xml 2>"$T/err" && fail "-o xml must fail"
grep -q "^rgemma: bench: --output must be md or json" "$T/err" || fail "bad -o message: $(cat "$T/err")"
"$RGEMMA" bench -m "$M" -d 1,x 2>"$T/err" && fail "a bad depth list must fail"
grep -q "^rgemma: bench: --depth must be an integer" "$T/err" || fail "bad -d message: $(cat "$T/err")"
exit 0
