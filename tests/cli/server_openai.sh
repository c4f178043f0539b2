#!/bin/sh
# rgemma serve with the official `openai` npm package (tests/node): plain and
# streamed chat, completions, a multi-turn chat on the state cache, errors.
# The package is installed into tests/node/node_modules (git ignores it) from
# tests/node/package-lock.json the first time.
. tests/cli/server_common.inc
command -v node >/dev/null || fail "node is not installed (make deps)"
if [ ! -f tests/node/node_modules/openai/package.json ]; then
    npm ci --prefix tests/node --no-audit --no-fund >"$TMP/npm.log" 2>&1 ||
        { cat "$TMP/npm.log" >&2; fail "npm ci in tests/node failed (the npm registry must be reachable once)"; }
fi
make_model
start_server -np 2
node tests/node/openai_client.mjs "$URL/v1" || fail "the openai client test failed"
stop_server
