#!/bin/sh
# rgemma serve under contention: N slots busy, a bounded queue then 503, a
# client that hangs up frees its slot (or its queue place) at once, the
# request timeout ends long requests, and other clients are served all along.
# (A request times out in the queue only if the one ahead overruns its own
# deadline, which the slots never let happen, so that 503 is not provoked.)
. tests/cli/server_common.inc
make_model

# wait_health PYTHON_CONDITION WHAT: poll /health for up to 10 s
wait_health() {
    _polls=0
    while [ $_polls -lt 100 ]; do
        [ "$(get /health)" = 200 ] && [ "$(json "bool($1)")" = true ] && return 0
        sleep 0.1
        _polls=$((_polls + 1))
    done
    fail "$2 (health: $(cat "$TMP/out"))"
}
metric() { curl -s "$URL/metrics" | sed -n "s/^$1 //p"; }
# a request that runs until stopped: no token limit worth the name, no end of turn
LONG='{"messages":[{"role":"user","content":"Go on forever"}],"max_tokens":1000000,"ignore_eos":true,"stream":true}'
LONG_NS='{"prompt":"Go on","max_tokens":1000000,"ignore_eos":true}'
SHORT='{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}'

start_server -np 2 --queue 1 --max-tokens 1000000 --timeout 120

# two streams take both slots
curl -s -N --data-binary "$LONG" "$URL/v1/chat/completions" >"$TMP/a" 2>/dev/null &
A=$!
curl -s -N --data-binary "$LONG" "$URL/v1/chat/completions" >"$TMP/b" 2>/dev/null &
B=$!
wait_health 'r["slots_processing"] == 2' "two streams should fill both slots"
# a non-streaming one waits in the queue
curl -s --data-binary "$LONG_NS" "$URL/v1/completions" >"$TMP/c" 2>/dev/null &
C=$!
wait_health 'r["queue_depth"] == 1' "the third request should be queued"
# the queue is full: 503 with an OpenAI error and Retry-After
code=$(curl -s -D "$TMP/headers" -o "$TMP/out" -w '%{http_code}' --data-binary "$SHORT" "$URL/v1/chat/completions")
expect "$code" 503 "request beyond the queue"
check 'r["error"]["code"] == "overloaded" and r["error"]["type"] == "server_error"' "503 error object"
grep -qi '^Retry-After: 1' "$TMP/headers" || fail "no Retry-After header on 503"
[ "$(metric rgemma_requests_rejected_total)" -ge 1 ] || fail "rejection not counted"
[ "$(metric rgemma_queue_depth)" = 1 ] && [ "$(metric rgemma_slots_busy)" = 2 ] || fail "metrics gauges wrong"
# other endpoints answer meanwhile
expect "$(get /v1/models)" 200 "models while busy"
expect "$(post /tokenize '{"content":"still here"}')" 200 "tokenize while busy"

# stream A hangs up: its slot goes to the queued request at once
kill $A
wait $A 2>/dev/null
wait_health 'r["queue_depth"] == 0 and r["slots_processing"] == 2' "the queued request should take the freed slot"
[ "$(metric rgemma_client_disconnects_total)" -ge 1 ] || fail "disconnect not counted"
# the non-streaming client C hangs up too: its slot is freed
kill $C
wait $C 2>/dev/null
wait_health 'r["slots_processing"] == 1' "a non-streaming client that hangs up should free its slot"
# a short request is served on the free slot next to the long stream B
expect "$(post /v1/chat/completions "$SHORT")" 200 "short request next to a long one"
check 'r["choices"][0]["finish_reason"] in ("stop", "length")' "short request answer"
[ -s "$TMP/b" ] && head -c 6 "$TMP/b" | grep -q '^data: ' || fail "stream B got nothing"

# a client that leaves while queued frees its queue place
curl -s -N --data-binary "$LONG" "$URL/v1/chat/completions" >/dev/null 2>&1 &
D=$!
wait_health 'r["slots_processing"] == 2' "stream D should take the free slot"
curl -s --data-binary "$LONG_NS" "$URL/v1/completions" >/dev/null 2>&1 &
E=$!
wait_health 'r["queue_depth"] == 1' "E should be queued"
kill $E
wait $E 2>/dev/null
wait_health 'r["queue_depth"] == 0 and r["slots_processing"] == 2' "a queued client that hangs up should leave the queue"
kill $B $D
wait $B $D 2>/dev/null
wait_health 'r["slots_processing"] == 0 and r["queue_depth"] == 0' "all slots should be idle"
stop_server

# ---- the request timeout ends running requests with finish_reason "length"
start_server -np 1 --max-tokens 1000000 --timeout 2
curl -s -N --data-binary "$LONG" "$URL/v1/chat/completions" >"$TMP/a"
sse "$TMP/a"
check 'r["finish"] == "length" and r["usage"]["completion_tokens"] > 0' "timed-out stream" "$TMP/sse.json"
code=$(curl -s -o "$TMP/out" -w '%{http_code}' --max-time 20 --data-binary "$LONG_NS" "$URL/v1/completions")
expect "$code" 200 "non-streaming request cut by the timeout"
check 'r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] > 0' "timed-out answer"
[ "$(metric rgemma_request_timeouts_total)" -ge 2 ] || fail "timeouts not counted"
stop_server
echo "server_concurrency: all checks passed"
