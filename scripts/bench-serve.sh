#!/bin/sh
# Benchmarks of rgemma serve (figures, no pass/fail):
#   1. a 10-turn chat with the conversation state cache on, then off
#      (tests/node/chat_bench.mjs): prompt tokens processed and time per turn;
#   2. with --load: the load test (tests/node/load.mjs), 16 streaming clients;
#   3. with --batch: continuous batching (tests/node/batch_bench.mjs): one
#      client's t/s, CLIENTS at once (aggregate), and the gaps between the
#      tokens of CLIENTS-1 streams when a PROMPT-token prompt arrives
#      (-np CLIENTS; GEN tokens per stream, default 64; PROMPT default 512).
# usage: sh scripts/bench-serve.sh MODEL [TOKENIZER] [--load SECONDS | --batch]
#   e.g. sh scripts/bench-serve.sh /work/models/rg2b-bf16 ~/.cache/rgemma/gemma-tokenizer
# Environment: RGEMMA (default build/rgemma), TURNS (10), REPLY (16 tokens),
# THREADS (default: all cores), CLIENTS (16), SLOTS for the load test (4).
set -eu
MODEL=$1
TOK=${2:-$1}
LOAD=""
BATCH=""
[ "${3:-}" = "--load" ] && LOAD=${4:-30}
[ "${3:-}" = "--batch" ] && BATCH=1
RGEMMA=${RGEMMA:-build/rgemma}
THREADS=${THREADS:-$(nproc)}
TMP=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT

serve() { # serve OPTIONS...: start on a free loopback port, set URL
    : >"$TMP/log"
    "$RGEMMA" serve -m "$MODEL" --tokenizer "$TOK" --port 0 "$@" >"$TMP/log" 2>&1 &
    PID=$!
    while ! grep -q "listening on" "$TMP/log"; do
        kill -0 $PID 2>/dev/null || { cat "$TMP/log"; exit 1; }
        sleep 0.2
    done
    head -1 "$TMP/log"
    URL=$(sed -n 's/.*listening on \(http:[^ ]*\)$/\1/p' "$TMP/log")
}
stop() { kill $PID; wait $PID || true; PID=""; }

if [ -n "$BATCH" ]; then
    echo "== continuous batching: ${CLIENTS:-16} slots, $THREADS threads"
    serve -np "${CLIENTS:-16}" -t "$THREADS" --queue 64
    node tests/node/batch_bench.mjs "$URL" "${CLIENTS:-16}" "${GEN:-64}" "${PROMPT:-512}"
    stop
    exit 0
fi
for cache in 16 0; do
    echo "== 10-turn chat, --cache-states $cache"
    serve -np 1 -t "$THREADS" --cache-states $cache
    node tests/node/chat_bench.mjs "$URL" "${TURNS:-10}" "${REPLY:-16}"
    stop
done
if [ -n "$LOAD" ]; then
    echo "== load: ${CLIENTS:-16} streaming clients, $LOAD s, ${SLOTS:-4} slots"
    serve -np "${SLOTS:-4}" -t 1 --queue 64
    node tests/node/load.mjs "$URL" "$PID" "${CLIENTS:-16}" "$LOAD" 48
    stop
fi
