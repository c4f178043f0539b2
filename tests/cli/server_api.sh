#!/bin/sh
# rgemma serve over loopback with curl: every endpoint, streaming and not,
# sampling fields, stop strings, the conversation state cache, metrics, and
# bad input (each an OpenAI-style error with a 4xx status, the server still
# fine afterwards), then a clean stop on SIGTERM.
. tests/cli/server_common.inc

# options (getopt_long): bad numbers and unknown options are refused before
# anything loads, with one line naming the flag
serve_refuses() { # $1 = message, then the arguments
    want=$1
    shift
    if "$RGEMMA" serve -m /nonexistent "$@" 2>"$TMP/err"; then echo "FAIL: serve $* started"; exit 1; fi
    [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "^rgemma: serve: $want" "$TMP/err" ||
        { echo "FAIL: serve $*: $(cat "$TMP/err")"; exit 1; }
}
serve_refuses "--port must be an integer in \[0, 65535\]" --port x
serve_refuses "--parallel must be an integer" -np 0
serve_refuses "--parallel must be an integer" --parallel 2x
serve_refuses "--threads must be an integer" -t 0
serve_refuses "--max-body must be an integer" --max-body 1
serve_refuses "unknown or incomplete option '--bogus'" --bogus
serve_refuses "unknown or incomplete option '--port'" --port
serve_refuses "unexpected argument 'extra'" extra
make_model
start_server -np 2 --max-body 65536 --max-tokens 64 --cache-states 8

# ---- GET endpoints
expect "$(get /health)" 200 /health
check 'r["status"] == "ok" and r["slots_idle"] == 2' /health
expect "$(get /v1/models)" 200 /v1/models
check 'r["object"] == "list" and r["data"][0]["id"] == "tiny" and r["data"][0]["object"] == "model"' /v1/models

# ---- chat, non-streaming (greedy: deterministic)
CHAT='{"model":"tiny","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there"}],"max_tokens":12,"temperature":0}'
expect "$(post /v1/chat/completions "$CHAT")" 200 chat
check 'r["object"] == "chat.completion" and r["choices"][0]["message"]["role"] == "assistant"' "chat object"
check 'r["choices"][0]["finish_reason"] in ("stop", "length") and r["id"].startswith("chatcmpl-")' "chat finish"
check '0 < r["usage"]["completion_tokens"] <= 12 and r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"]' "chat usage"
cp "$TMP/out" "$TMP/chat1.json"
TEXT1=$(json 'r["choices"][0]["message"]["content"]' "$TMP/chat1.json")
PROMPT1=$(json 'r["usage"]["prompt_tokens"]' "$TMP/chat1.json")
expect "$(post /v1/chat/completions "$CHAT")" 200 "chat again"
[ "$(json 'r["choices"][0]["message"]["content"]')" = "$TEXT1" ] || fail "greedy chat is not deterministic"

# ---- the same, streaming: the deltas join to the same text
STREAM=$(printf '%s' "$CHAT" | sed 's/"temperature":0}/"temperature":0,"stream":true}/')
code=$(curl -s -N -o "$TMP/stream" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$STREAM" "$URL/v1/chat/completions")
expect "$code" 200 "chat stream"
sse "$TMP/stream"
check 'r["role"] == "assistant" and r["error"] is None and r["finish"] in ("stop", "length")' "stream chunks" "$TMP/sse.json"
check 'r["usage"] is not None and 0 < r["usage"]["completion_tokens"] <= 12' "stream usage" "$TMP/sse.json"
[ "$(json 'r["text"]' "$TMP/sse.json")" = "$TEXT1" ] || fail "streamed text differs from the non-streamed text"
# stream_options.include_usage: usage in a last chunk of its own (no choices)
INCL=$(printf '%s' "$STREAM" | sed 's/"stream":true}/"stream":true,"stream_options":{"include_usage":true}}/')
curl -s -N -o "$TMP/stream" --data-binary "$INCL" "$URL/v1/chat/completions"
sse "$TMP/stream"
grep -q '"choices":\[\],"usage"' "$TMP/stream" || fail "include_usage: no usage-only chunk"

# ---- completions: text prompt, token-id prompt, streaming
expect "$(post /v1/completions '{"prompt":"The license","max_tokens":8,"temperature":0}')" 200 completions
check 'r["object"] == "text_completion" and isinstance(r["choices"][0]["text"], str)' "completion object"
CTEXT=$(json 'r["choices"][0]["text"]')
expect "$(post /tokenize '{"content":"The license","add_special":true}')" 200 tokenize
IDS=$(json 'r["tokens"]')
check 'r["tokens"][0] == 2 and len(r["tokens"]) > 2' "tokenize with BOS"
expect "$(post /v1/completions "{\"prompt\":$IDS,\"max_tokens\":8,\"temperature\":0}")" 200 "completions from ids"
[ "$(json 'r["choices"][0]["text"]')" = "$CTEXT" ] || fail "token-id prompt and text prompt disagree"
curl -s -N -o "$TMP/stream" --data-binary '{"prompt":"The license","max_tokens":8,"temperature":0,"stream":true}' "$URL/v1/completions"
sse "$TMP/stream"
[ "$(json 'r["text"]' "$TMP/sse.json")" = "$CTEXT" ] || fail "streamed completion differs"

# ---- sampling: a seed repeats, stop strings cut the text
SEEDED='{"prompt":"Hello","max_tokens":16,"temperature":1.0,"top_k":0,"top_p":1,"min_p":0,"seed":1234}'
post /v1/completions "$SEEDED" >/dev/null
S1=$(json 'r["choices"][0]["text"]')
post /v1/completions "$SEEDED" >/dev/null
[ "$(json 'r["choices"][0]["text"]')" = "$S1" ] || fail "the same seed gave different text"
post /v1/completions '{"prompt":"Hello","max_tokens":24,"temperature":0}' >/dev/null
FULL=$(json 'r["choices"][0]["text"]')
STOP=$(json 'r["choices"][0]["text"][4:6]')
[ ${#STOP} -eq 2 ] || fail "greedy text too short for the stop-string check: '$FULL'"
post /v1/completions "{\"prompt\":\"Hello\",\"max_tokens\":24,\"temperature\":0,\"stop\":$(printf '%s' "$STOP" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >/dev/null
WANT=$(python3 -c 'import sys; print(sys.argv[1][:sys.argv[1].index(sys.argv[2])])' "$FULL" "$STOP")
[ "$(json 'r["choices"][0]["text"]')" = "$WANT" ] || fail "stop string: got '$(json 'r["choices"][0]["text"]')', want '$WANT'"
check 'r["choices"][0]["finish_reason"] == "stop"' "stop string finish"

# ---- tokenize / detokenize round trip
expect "$(post /tokenize '{"content":"Copyright (C) 2007 Free Software Foundation","with_pieces":true}')" 200 "tokenize pieces"
check 'all(isinstance(p["id"], int) and isinstance(p["piece"], str) for p in r["tokens"])' "pieces"
IDS=$(json '[p["id"] for p in r["tokens"]]')
expect "$(post /detokenize "{\"tokens\":$IDS}")" 200 detokenize
check 'r["content"] == "Copyright (C) 2007 Free Software Foundation"' "detokenize round trip"

# ---- the conversation state cache: turn 2 continues from turn 1's state
TURN2=$(python3 -c 'import json,sys
print(json.dumps({"model": "tiny", "temperature": 0, "max_tokens": 12, "messages": [
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": sys.argv[1]}, {"role": "user", "content": "And then?"}]}))' "$TEXT1")
expect "$(post /v1/chat/completions "$TURN2")" 200 "turn 2"
CACHED=$(json 'r["usage"]["prompt_tokens_details"]["cached_tokens"]')
[ "$CACHED" -gt "$PROMPT1" ] || fail "turn 2 reused $CACHED cached tokens, expected more than turn 1's prompt ($PROMPT1)"
check 'r["timings"]["cache_n"] == r["usage"]["prompt_tokens_details"]["cached_tokens"]' "timings.cache_n"

# ---- bad input: status, OpenAI error object, and the param it names
bad() { # bad STATUS CODE PATH BODY-FILE|BODY
    if [ -f "$4" ]; then
        got=$(curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "@$4" "$URL$3")
    else
        got=$(curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "$4" "$URL$3")
    fi
    [ "$got" = "$1" ] || fail "bad input ($2, $3): HTTP $got, expected $1: $(head -c 300 "$TMP/out")"
    check "isinstance(r['error']['message'], str) and r['error']['type'] == 'invalid_request_error' and r['error']['code'] == '$2'" "error object for $2"
}
C=/v1/chat/completions
M='"messages":[{"role":"user","content":"hi"}]'
bad 400 invalid_json $C '{"messages":'
bad 400 invalid_json $C '{"messages":[]} trailing'
bad 400 invalid_json $C '[1,2,3]'
bad 400 invalid_json $C ''
bad 400 invalid_json $C '{"messages":[{"role":"user","content":"\ud800"}]}'
bad 400 invalid_type $C '{"messages":"hello"}'
bad 400 invalid_type $C "{$M,\"max_tokens\":\"10\"}"
bad 400 invalid_type $C "{$M,\"max_tokens\":1.5}"
bad 400 invalid_type $C "{$M,\"temperature\":\"hot\"}"
bad 400 invalid_type $C "{$M,\"stream\":\"yes\"}"
bad 400 invalid_type $C "{$M,\"stop\":[1,2]}"
bad 400 invalid_type $C "{$M,\"model\":42}"
bad 400 invalid_type $C '{"messages":[{"role":"user","content":{"text":"hi"}}]}'
bad 400 invalid_type $C '{"messages":[{"content":"no role"}]}'
bad 400 missing_field $C '{"max_tokens":5}'
bad 400 invalid_value $C '{"messages":[]}'
bad 400 invalid_value $C '{"messages":[{"role":"tool","content":"x"}]}'
bad 400 invalid_value $C "{$M,\"max_tokens\":-1}"
bad 400 invalid_value $C "{$M,\"max_tokens\":0}"
bad 400 invalid_value $C "{$M,\"max_tokens\":1000000000000}"
bad 400 invalid_value $C "{$M,\"max_tokens\":65}"
bad 400 invalid_value $C "{$M,\"temperature\":-0.5}"
bad 400 invalid_value $C "{$M,\"top_p\":2}"
bad 400 invalid_value $C "{$M,\"n\":2}"
bad 400 unsupported_parameter $C "{$M,\"logprobs\":true}"
bad 400 unsupported_content $C '{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}'
bad 404 model_not_found $C "{$M,\"model\":\"gpt-4\"}"
bad 400 missing_field /v1/completions '{"max_tokens":5}'
bad 400 invalid_value /v1/completions '{"prompt":[1,2,100000]}'
bad 400 invalid_value /v1/completions '{"prompt":["a","b"]}'
bad 400 invalid_value /v1/completions '{"prompt":[]}'
bad 400 invalid_type /tokenize '{"content":5}'
bad 400 invalid_value /detokenize '{"tokens":[1,-3]}'
bad 400 invalid_type /detokenize '{"tokens":"12"}'
printf '{"messages":[{"role":"user","content":"caf\351"}]}' >"$TMP/latin1.json"
bad 400 invalid_utf8 $C "$TMP/latin1.json"
printf '{"prompt":"\300\257"}' >"$TMP/overlong.json"
bad 400 invalid_utf8 /v1/completions "$TMP/overlong.json"
# oversized bodies: with a Content-Length (refused before reading) and chunked
python3 -c 'import json; print(json.dumps({"messages": [{"role": "user", "content": "x" * 70000}]}))' >"$TMP/big.json"
got=$(curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "@$TMP/big.json" "$URL$C")
[ "$got" = 413 ] || fail "oversized body: HTTP $got"
check 'r["error"]["code"] == "request_too_large"' "413 error object"
got=$(curl -s -o "$TMP/out" -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary "@$TMP/big.json" "$URL$C")
[ "$got" = 413 ] || fail "oversized chunked body: HTTP $got"
# unknown endpoint, wrong method
expect "$(get /v1/nothing)" 404 "unknown endpoint"
check 'r["error"]["code"] == "not_found"' "404 error object"
expect "$(get /v1/chat/completions)" 405 "GET on a POST endpoint"
expect "$(post /health '{}')" 405 "POST on a GET endpoint"

# still healthy, and still answering the same
expect "$(post /v1/chat/completions "$CHAT")" 200 "chat after bad input"
[ "$(json 'r["choices"][0]["message"]["content"]')" = "$TEXT1" ] || fail "answer changed after bad input"

# ---- metrics
expect "$(get /metrics)" 200 /metrics
for m in 'rgemma_requests_total{endpoint="/v1/chat/completions"}' 'rgemma_responses_total{code="400"}' \
    'rgemma_responses_total{code="413"}' rgemma_generated_tokens_total rgemma_tokens_per_second \
    rgemma_queue_depth rgemma_slots_busy rgemma_state_cache_hits_total; do
    grep -q "^$m [0-9]" "$TMP/out" || fail "metric $m missing"
done
n400=$(sed -n 's/^rgemma_responses_total{code="400"} //p' "$TMP/out")
[ "$n400" -ge 35 ] || fail "rgemma_responses_total{code=\"400\"} is $n400"
hits=$(sed -n 's/^rgemma_state_cache_hits_total //p' "$TMP/out")
[ "$hits" -ge 1 ] || fail "no state-cache hit counted"

# ---- no CORS unless asked: no Access-Control header, OPTIONS is not allowed
curl -s -D "$TMP/hdr" -o /dev/null "$URL/health"
grep -qi '^access-control' "$TMP/hdr" && fail "CORS headers sent without --cors"
got=$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS "$URL/v1/chat/completions")
[ "$got" = 405 ] || fail "OPTIONS without --cors: HTTP $got, expected 405"

stop_server
grep -q "stopping" "$TMP/server.log" || fail "no stop message"

# ---- --cors ORIGIN: every response names the origin, preflights get 204
start_server --cors http://app.example:3000
curl -s -D "$TMP/hdr" -o /dev/null "$URL/health"
grep -qi '^access-control-allow-origin: http://app.example:3000' "$TMP/hdr" || fail "no Allow-Origin on /health"
grep -qi '^vary: origin' "$TMP/hdr" || fail "no Vary: Origin with a named origin"
got=$(curl -s -D "$TMP/hdr" -o /dev/null -w '%{http_code}' -X OPTIONS -H 'Origin: http://app.example:3000' \
    -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type' "$URL/v1/chat/completions")
[ "$got" = 204 ] || fail "preflight: HTTP $got, expected 204"
grep -qi '^access-control-allow-methods: .*POST' "$TMP/hdr" || fail "preflight without Allow-Methods POST"
grep -qi '^access-control-allow-headers: .*content-type' "$TMP/hdr" || fail "preflight without Allow-Headers"
curl -s -N -D "$TMP/hdr" -o "$TMP/stream" --data-binary "$STREAM" "$URL/v1/chat/completions"
grep -qi '^access-control-allow-origin: http://app.example:3000' "$TMP/hdr" || fail "no Allow-Origin on a stream"
grep -q '^data: \[DONE\]' "$TMP/stream" || fail "stream with --cors did not finish"
expect "$(post /v1/chat/completions '{"messages":7}')" 400 "bad request with --cors"
got=$(curl -s -o /dev/null -w '%{http_code}' -X OPTIONS "$URL/nowhere")
[ "$got" = 404 ] || fail "OPTIONS on an unknown endpoint: HTTP $got, expected 404"
stop_server
timeout 30 "$RGEMMA" serve -m "$MODEL" --cors 'http://a b' >"$TMP/bad.log" 2>&1 && fail "--cors with a space was accepted"
grep -q "printable ASCII" "$TMP/bad.log" || fail "--cors with a space: unclear error"

echo "server_api: all checks passed"
