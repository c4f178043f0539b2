#!/bin/sh
# rgemma bench: every requested row in the markdown table and in the JSON,
# each with a roofline fraction, --batch rows with their aggregate and
# per-sequence t/s; bad options, lists and models are refused.
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


# --batch: rows "tgN @ dD ×B" (B = 1 stays the plain tg row), aggregate t/s
# and one sequence's share; each row's JSON has "batch"
"$RGEMMA" bench -m "$M" -p 0 -n 3 -d 0,20 -b 4,1,4 -r 1 >"$T/md" 2>"$T/err" || fail "bench -b: $(cat "$T/err")"
grep -q "^| model | type | weights/token | threads | test | t/s | per seq | roofline | peak RSS |" "$T/md" \
    || fail "-b: no per seq column: $(cat "$T/md")"
[ "$(grep -c '^| dev_4layer' "$T/md")" -eq 4 ] || fail "-b 4,1,4: expected 4 rows: $(cat "$T/md")"
for t in "tg3" "tg3 @ d20"; do
    grep -q "^| dev_4layer | F32 | [0-9.]* GB | [0-9]* | $t | [0-9.]* ± [0-9.]* | [0-9.]* | [0-9]*% of [0-9.]* t/s ([0-9.]* of [0-9.]* GB/s) |" \
        "$T/md" || fail "-b: plain row $t missing or malformed: $(cat "$T/md")"
    grep -q "^| dev_4layer | F32 | [0-9.]* GB | [0-9]* | $t ×4 | [0-9.]* ± [0-9.]* | [0-9.]* | [0-9]*% of [0-9.]* t/s (\(memory; f32 FMA\|f32 FMA; memory\) [0-9.]* t/s) | [0-9.]* [KMG]iB |" \
        "$T/md" || fail "-b: row $t ×4 missing or malformed: $(cat "$T/md")"
done
# per seq = t/s / 4 on the ×4 rows (to the printed rounding), = t/s on the plain ones
awk -F'|' '$2 ~ /dev_4layer/ { split($7, a, " "); b = ($6 ~ /×4/) ? 4 : 1;
    if (a[1] <= 0 || $8 + 0 <= 0 || (a[1] / b - $8) ^ 2 > 0.0001 + (a[1] / b) ^ 2 * 1e-6) { print; bad = 1 } }
    END { exit bad }' "$T/md" || fail "-b: per seq is not t/s / B: $(cat "$T/md")"
grep -q "tg3 ×4 rep 1: [0-9.]* t/s ([0-9.]* per sequence)" "$T/err" || fail "-b: no progress line: $(cat "$T/err")"

"$RGEMMA" bench -m "$M" -p 8 -n 2 -d 0 -b 1,3 -r 1 -o json >"$T/json" 2>"$T/err" || fail "bench -o json: $(cat "$T/err")"
grep -q '"read_bandwidth_bytes_per_s"' "$T/json" || fail "json: no bandwidth"
grep -q '"weight_stream_bytes_per_s"' "$T/json" || fail "json: no weight stream rate"
[ "$(grep -c '"roofline_fraction"' "$T/json")" -eq 3 ] || fail "json: expected 3 results: $(cat "$T/json")"
grep -q '"test":[[:space:]]*"pp8"' "$T/json" || fail "json: no pp8 row"
python3 - "$T/json" <<'PY' || fail "json -b: $(cat "$T/json")"
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
assert [(r["test"], r["batch"]) for r in rows] == [("pp8", 1), ("tg2", 1), ("tg2 \u00d73", 3)], rows
for r in rows:
    b = r["batch"]
    assert len(r["tokens_per_s"]) == 1 and r["tokens_per_s_mean"] > 0
    assert abs(r["tokens_per_s_per_sequence_mean"] * b - r["tokens_per_s_mean"]) < 1e-6 * r["tokens_per_s_mean"]
    assert r["tokens_per_s_mean"] >= r["tokens_per_s_per_sequence_mean"]
    assert r["peak_rss_bytes"] > 0 and 0 < r["roofline_fraction"]
b3 = rows[2]
assert b3["roofline_tokens_per_s"] == min(b3["compute_roofline_tokens_per_s"], b3["memory_roofline_tokens_per_s"])
assert b3["state_bytes_per_sequence"] > 0 and b3["flops_per_token"] > 0
assert b3["roofline"] in ("memory read bandwidth", "f32 FMA")
PY

# a kernel set without int8 dot products (scalar) has no int8 peak: none is
# printed (not "int8 dot 0.0 GOP/s"), and the JSON's peak_int8_dot_ops is null
"$RGEMMA" bench -m "$M" -k scalar -p 4 -n 0 -r 1 >"$T/md" 2>"$T/err" || fail "bench -k scalar: $(cat "$T/err")"
! grep -q "int8" "$T/md" "$T/err" || fail "-k scalar printed an int8 peak: $(cat "$T/md" "$T/err")"
"$RGEMMA" bench -m "$M" -k scalar -p 4 -n 0 -r 1 -o json >"$T/json" 2>"$T/err" || fail "bench -k scalar -o json: $(cat "$T/err")"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["machine"]; assert m["peak_int8_dot_ops"] is None, m' "$T/json" \
    || fail "-k scalar: peak_int8_dot_ops is not null: $(cat "$T/json")"

"$RGEMMA" bench -m /nonexistent -p 8 -n 0 2>"$T/err" && fail "a missing model must fail"
grep -q "^rgemma: bench: /nonexistent" "$T/err" || fail "missing model message: $(cat "$T/err")"
"$RGEMMA" bench -m "$M" -o xml 2>"$T/err" && fail "-o xml must fail"
grep -q "^rgemma: bench: --output must be md or json" "$T/err" || fail "bad -o message: $(cat "$T/err")"
"$RGEMMA" bench -m "$M" -d 1,x 2>"$T/err" && fail "a bad depth list must fail"
grep -q "^rgemma: bench: --depth must be an integer" "$T/err" || fail "bad -d message: $(cat "$T/err")"
for b in 0 x 1,2000 "1,,2" ""; do
    "$RGEMMA" bench -m "$M" -b "$b" 2>"$T/err" && fail "-b '$b' must fail"
    grep -q "^rgemma: bench: --batch\(: empty\| must be an integer in \[1, 1024\]\)" "$T/err" \
        || fail "bad -b '$b' message: $(cat "$T/err")"
done
exit 0
