#!/bin/sh
# Bounded load test of rgemma serve: 16 concurrent streaming clients (node,
# tests/node/load.mjs) for RGEMMA_LOAD_SECONDS (default 6; the figures in the
# README come from 30). Every stream must be complete, no request may fail,
# the server's RSS must stay flat; prints requests/s and tokens/s.
. tests/cli/server_common.inc
command -v node >/dev/null || fail "node is not installed (make deps)"
make_model
# under AddressSanitizer (make asan) freed memory waits in a quarantine that
# would read as RSS growth: keep it small (other builds ignore ASAN_OPTIONS)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4:thread_local_quarantine_size_kb=64"
start_server -np 4 -t 1 --queue 16 --cache-states 16
node tests/node/load.mjs "$URL" "$SRV_PID" "${RGEMMA_LOAD_CLIENTS:-16}" "${RGEMMA_LOAD_SECONDS:-6}" 48 ||
    fail "load test failed"
expect "$(get /health)" 200 "health after the load"
check 'r["slots_processing"] == 0 and r["queue_depth"] == 0' "idle after the load"
stop_server
