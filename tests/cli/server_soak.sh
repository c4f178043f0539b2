#!/bin/sh
# Soak (issue 12): 32 concurrent streaming clients for RGEMMA_SOAK_SECONDS
# (default 8 here; `RGEMMA_SOAK_SECONDS=60` for the full run), 20% of them
# hanging up after their first chunk and 10% sending malformed bodies: no
# 5xx but the documented 503, every completed stream ends with [DONE], every
# malformed body gets a 4xx, RSS after the warm-up stays within 10%, and the
# server is idle afterwards with no more disconnects counted than hang-ups.
# (RSS "flat" as in server_load.sh: growth within max(8 MiB, 10%).)
. tests/cli/server_common.inc
command -v node >/dev/null || fail "node is not installed (make deps)"
make_model
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4:thread_local_quarantine_size_kb=64"
# under ASan the RSS is not a measure of leaks (LeakSanitizer checks the exit)
ldd "$RGEMMA" 2>/dev/null | grep -q libasan && export LOAD_IGNORE_RSS=1
start_server -np 4 -t 1 --queue 32 --cache-states 16
node tests/node/load.mjs "$URL" "$SRV_PID" 32 "${RGEMMA_SOAK_SECONDS:-8}" 48 0.2 0.1 >"$TMP/soak.json" ||
    fail "soak failed: $(cat "$TMP/soak.json")"
cat "$TMP/soak.json"
json 'r["hung_up"] > 0 and r["malformed_4xx"] > 0 and r["requests"] > 0' "$TMP/soak.json" | grep -q true ||
    fail "the soak did not exercise hang-ups and malformed bodies: $(cat "$TMP/soak.json")"
sleep 0.5
expect "$(get /health)" 200 "health after the soak"
check 'r["slots_processing"] == 0 and r["queue_depth"] == 0' "idle after the soak"
hung=$(json 'r["hung_up"]' "$TMP/soak.json")
disc=$(curl -s "$URL/metrics" | sed -n 's/^rgemma_client_disconnects_total \([0-9]*\).*/\1/p')
[ "$disc" -le "$hung" ] || fail "$disc disconnects counted for $hung hang-ups"
stop_server
