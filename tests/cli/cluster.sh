#!/bin/sh
# Replicas of rgemma serve sharing conversation states through Redis, behind
# deploy/nginx.conf, on one machine (127.0.0.1, free ports, everything
# stopped at the end):
#   1. a 12-turn chat at temperature 0 on one server (the reference);
#   2. the same chat alternating between 2 replicas with no stickiness: every
#      reply equals the reference's, and after turn 1 each turn processes only
#      its own new tokens (as few as the single server, from usage and
#      /metrics); after turn 11 the replica that served it is killed with
#      SIGKILL and turn 12 continues on the other with no re-prefill;
#   3. Redis stopped mid-run: zero failed requests, a fresh replica prefills
#      again (same reply), the store's error counters rise;
#   4. nginx in front (deploy/nginx.conf, its ports and paths replaced): an SSE
#      stream through it, X-Request-Id through it; a drain (SIGTERM) during 8
#      live streams: all 8 finish, /health answers 503 at once, new requests
#      through nginx go to the other replica (0 failures).
# Prints the figures: prompt tokens processed per turn with and without the
# store, store round trips, and stored bytes by conversation length.
# redis-server and nginx (make deps) are required: without them it fails.
. tests/cli/server_common.inc

NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
command -v redis-server >/dev/null || fail "redis-server is not installed (make deps installs it): this test needs it"
command -v redis-cli >/dev/null || fail "redis-cli is not installed (make deps installs redis-server): this test needs it"
[ -n "$NGINX" ] || fail "nginx is not installed (make deps installs it): this test needs it"

# fail: also the last lines of every replica's, Redis's and nginx's logs
fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/*.log; do
        [ -s "$f" ] || continue
        echo "--- $(basename "$f") (last lines):" >&2
        tail -n 8 "$f" >&2
    done
    exit 1
}

PIDS=""
NGINX_PID=""
cleanup_all() {
    # nginx first, with TERM: its master stops its workers (a SIGKILLed master leaves them running)
    if [ -n "$NGINX_PID" ]; then
        kill -TERM "$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
    fi
    for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    cleanup
}
trap cleanup_all EXIT

# The test model with the 2B attention window (2048), so that the stored
# states grow with the conversation as the 2B's do.
sed -e 's/"vocab_size": 512/"vocab_size": 1000/' -e 's/"attention_window_size": 16/"attention_window_size": 2048/' \
    tests/data/golden/dev_4layer/config.json >"$TMP/config.json"
grep -q '"attention_window_size": 2048' "$TMP/config.json" || fail "could not write the test config"
"$RGEMMA" synth --preset "$TMP/config.json" --dtype f32 --seed 7 --tokenizer "$TOKENIZER" -o "$MODEL" \
    >"$TMP/synth.log" 2>&1 || { cat "$TMP/synth.log" >&2; fail "rgemma synth failed"; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# replica NAME [serve options...]: starts one; sets NAME_PID and NAME_URL
replica() {
    _n=$1
    shift
    _log=$TMP/$_n.log
    : >"$_log"
    "$RGEMMA" serve -m "$MODEL" --tokenizer "$TOKENIZER" --alias tiny --port 0 -t 1 -v "$@" >"$_log" 2>&1 &
    _pid=$!
    PIDS="$PIDS $_pid"
    _port=""
    _tries=0
    while [ $_tries -lt 600 ] && [ -z "$_port" ]; do
        _port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$_log")
        kill -0 "$_pid" 2>/dev/null || { tail "$_log" >&2; fail "replica $_n exited at start"; }
        [ -n "$_port" ] || sleep 0.1
        _tries=$((_tries + 1))
    done
    [ -n "$_port" ] || fail "replica $_n did not start within 60 s"
    eval "${_n}_PID=$_pid ${_n}_URL=http://127.0.0.1:$_port ${_n}_PORT=$_port"
    [ "$(curl -s -o "$TMP/out" -w '%{http_code}' "http://127.0.0.1:$_port/ready")" = 200 ] ||
        fail "replica $_n listens but /ready is not 200: $(cat "$TMP/out")"
}

# metric URL NAME: one value of /metrics (labels included in NAME)
metric() { curl -s "$1/metrics" | awk -v k="$2" '$1 == k {print $2}'; }

# turn URL CONV N: the chat CONV's turn N (the whole conversation is sent, as
# OpenAI clients do), greedy; the answer's figures go to $TMP/CONV.N.json
cat >"$TMP/turn.py" <<'EOF'
import json, os, sys, urllib.request
url, conv, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = json.load(open(conv)) if os.path.exists(conv) else []
topics = ["rivers", "mountains", "the weather", "old towns", "the sea", "trains", "music", "gardens", "winter",
          "bridges", "markets", "stars", "forests", "islands"]
msgs.append({"role": "user", "content": "Turn %d: tell me more about %s." % (n, topics[(n - 1) % len(topics)])})
body = {"messages": msgs, "max_tokens": 12, "temperature": 0}
req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json", "X-Request-Id": "chat-turn-%d" % n})
r = urllib.request.urlopen(req, timeout=30)
assert r.headers.get("X-Request-Id") == "chat-turn-%d" % n, "X-Request-Id not sent back"
a = json.load(r)
content = a["choices"][0]["message"]["content"]
msgs.append({"role": "assistant", "content": content})
json.dump(msgs, open(conv, "w"))
u = a["usage"]
json.dump({"content": content, "prompt": u["prompt_tokens"], "cached": u["prompt_tokens_details"]["cached_tokens"],
           "completion": u["completion_tokens"]}, open("%s.%d.json" % (conv, n), "w"))
EOF
turn() { python3 "$TMP/turn.py" "$1" "$TMP/$2" "$3" 2>"$TMP/turn.err" || fail "turn $3 of $2 on $1 failed: $(tail -n 3 "$TMP/turn.err")"; }
field() { json "r[\"$3\"]" "$TMP/$1.$2.json"; } # field CONV N FIELD

# ---- 1. the reference: one server, its local cache, no store
replica REF
for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14; do turn "$REF_URL" ref "$n"; done
kill -TERM "$REF_PID"
wait "$REF_PID" || fail "the reference server did not stop cleanly"

# ---- 2. Redis, two replicas, the chat alternating between them
RPORT=$(free_port)
start_redis() { # no persistence: nothing is written to disk
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >>"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS="$PIDS $REDIS_PID"
    _tries=0
    until [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ]; do
        _tries=$((_tries + 1))
        [ $_tries -lt 100 ] || fail "redis-server did not start: $(tail -n 5 "$TMP/redis.log")"
        sleep 0.1
    done
}
start_redis
STORE="--state-store redis://127.0.0.1:$RPORT --state-ttl 600"
# shellcheck disable=SC2086
replica A $STORE
# shellcheck disable=SC2086
replica B $STORE

echo "turn  prompt tokens  processed: one server  alternating, store  alternating, no store (whole prompt)"
for n in 1 2 3 4 5 6 7 8 9 10 11 12; do
    if [ $((n % 2)) = 1 ]; then url=$A_URL; else url=$B_URL; fi
    turn "$url" chat "$n"
    [ "$(field chat $n content)" = "$(field ref $n content)" ] ||
        fail "turn $n: the reply differs from the single server's: '$(field chat $n content)' vs '$(field ref $n content)'"
    [ "$(field chat $n completion)" = "$(field ref $n completion)" ] ||
        fail "turn $n: $(field chat $n completion) tokens generated, the single server $(field ref $n completion)"
    prompt=$(field chat $n prompt)
    done_c=$((prompt - $(field chat $n cached)))
    done_r=$(($(field ref $n prompt) - $(field ref $n cached)))
    printf '%4d  %13d  %20d  %18d  %20d\n' "$n" "$prompt" "$done_r" "$done_c" "$prompt"
    if [ "$n" -ge 2 ]; then
        [ "$(field chat $n cached)" -gt 0 ] || fail "turn $n continued from no state (prefilled $prompt tokens)"
        [ "$done_c" -eq "$done_r" ] || fail "turn $n processed $done_c tokens, the single server $done_r"
    fi
    if [ "$n" = 11 ]; then
        # A served turn 11 and answered: its state is in Redis. A dies.
        [ "$(metric "$A_URL" rgemma_state_store_hits_total)" = 5 ] || fail "A's store hits: $(metric "$A_URL" rgemma_state_store_hits_total), expected 5 (turns 3, 5, 7, 9, 11)"
        kill -9 "$A_PID"
        wait "$A_PID" 2>/dev/null
    fi
done
[ "$(metric "$B_URL" rgemma_state_store_hits_total)" = 6 ] || fail "B's store hits: $(metric "$B_URL" rgemma_state_store_hits_total), expected 6"
# B's prompt tokens processed (from /metrics) are exactly its turns' own new tokens
want=0
for n in 2 4 6 8 10 12; do want=$((want + $(field chat $n prompt) - $(field chat $n cached))); done
[ "$(metric "$B_URL" rgemma_prompt_tokens_total)" = "$want" ] ||
    fail "B processed $(metric "$B_URL" rgemma_prompt_tokens_total) prompt tokens (/metrics), its turns' new tokens are $want"
[ "$(metric "$B_URL" rgemma_state_store_errors_total)" = 0 ] || fail "store errors while Redis was up"

# the figures: store round trips and stored bytes by conversation length
lookups=$(metric "$B_URL" 'rgemma_state_store_seconds_count{op="lookup"}')
lookup_s=$(metric "$B_URL" 'rgemma_state_store_seconds_sum{op="lookup"}')
writes=$(metric "$B_URL" 'rgemma_state_store_seconds_count{op="write"}')
write_s=$(metric "$B_URL" 'rgemma_state_store_seconds_sum{op="write"}')
python3 -c "import sys; l, ls, w, ws = map(float, sys.argv[1:]); print('store round trips on B: lookup (EXISTS + GET) %.2f ms mean over %d, write (SET) %.2f ms mean over %d' % (1e3 * ls / l, l, 1e3 * ws / w, w))" \
    "$lookups" "$lookup_s" "$writes" "$write_s"
echo "stored states (window 2048; a state's tokens ~ the conversation's): tokens -> bytes"
for k in $(redis-cli -p "$RPORT" --scan --pattern 'rgemma:*'); do
    # the position: the blob header's little-endian i64 at byte 40 (src/model/state_io.c)
    pos=$(redis-cli -p "$RPORT" --raw getrange "$k" 40 47 |
        python3 -c 'import struct, sys; print(struct.unpack("<q", sys.stdin.buffer.read()[:8])[0])')
    printf '  %6d tokens  %8d bytes\n' "$pos" "$(redis-cli -p "$RPORT" strlen "$k")"
done | sort -n | uniq
# one live state per conversation: each turn's write set its start's key to expire within 30 s
long=0
for k in $(redis-cli -p "$RPORT" --scan --pattern 'rgemma:*'); do
    [ "$(redis-cli -p "$RPORT" ttl "$k")" -gt 30 ] && long=$((long + 1))
done
[ "$long" = 1 ] || fail "$long stored states keep the full TTL, expected 1 (the conversation's last)"

# ---- 3. Redis stops: no request fails, a fresh replica prefills again
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1
wait "$REDIS_PID" 2>/dev/null
misses=$(metric "$B_URL" rgemma_state_store_misses_total)
turn "$B_URL" chat 13 # B's local cache still has turn 12: no prefix beyond it to ask Redis for
[ "$(metric "$B_URL" rgemma_state_store_misses_total)" = "$misses" ] || fail "turn 13 on B looked in the store although its local cache held the conversation"
[ "$(field chat 13 content)" = "$(field ref 13 content)" ] || fail "turn 13 (Redis down) differs from the reference"
[ "$(field chat 13 cached)" -gt 0 ] || fail "turn 13 on B (Redis down) did not use B's local cache"
# shellcheck disable=SC2086
replica C $STORE -np 8 --max-tokens 1000000 --drain-timeout 100
turn "$C_URL" chat 14 # C has never seen the conversation and the store is gone
[ "$(field chat 14 content)" = "$(field ref 14 content)" ] || fail "turn 14 (fresh replica, Redis down) differs from the reference"
[ "$(field chat 14 cached)" = 0 ] || fail "turn 14 on a fresh replica with Redis down claims cached tokens"
echo "Redis down: turn 13 on B processed $(($(field chat 13 prompt) - $(field chat 13 cached))) tokens (local cache), turn 14 on a fresh replica $(field chat 14 prompt) (prefill)"
errs_b=$(metric "$B_URL" rgemma_state_store_errors_total)
errs_c=$(metric "$C_URL" rgemma_state_store_errors_total)
[ "$errs_b" -gt 0 ] && [ "$errs_c" -gt 0 ] || fail "the store's errors did not rise with Redis down (B $errs_b, C $errs_c)"
[ "$(metric "$B_URL" rgemma_state_store_up)" = 0 ] || fail "rgemma_state_store_up is not 0 with Redis down"
for u in "$B_URL" "$C_URL"; do
    [ -z "$(curl -s "$u/metrics" | awk '$1 ~ /^rgemma_responses_total/ && $1 !~ /code="200"/')" ] ||
        fail "requests failed on $u: $(curl -s "$u/metrics" | grep rgemma_responses_total)"
done
echo "Redis down: 0 failed requests, store errors B $errs_b, C $errs_c"

# Redis back (empty): the replicas connect again after their backoff (at most 5 s)
start_redis
post_to() { curl -s -o /dev/null -w '%{http_code}' --data-binary "$2" "$1/v1/chat/completions"; }
for u in "$B_URL" "$C_URL"; do
    _tries=0
    until [ "$(metric "$u" rgemma_state_store_up)" = 1 ]; do
        _tries=$((_tries + 1))
        [ $_tries -lt 40 ] || fail "$u did not connect to Redis again within 8 s"
        [ "$(post_to "$u" '{"messages":[{"role":"user","content":"Are you back?"}],"max_tokens":2}')" = 200 ] ||
            fail "a request failed while Redis came back"
        sleep 0.2
    done
done

# ---- 4. nginx in front of B and C
NPORT=$(free_port)
{
    [ "$(id -u)" = 0 ] && echo "user root;" # the workers read nothing of ours, but their temp paths are in $TMP
    echo "pid $TMP/nginx.pid;"
    sed -e "s|listen 127.0.0.1:8080;|listen 127.0.0.1:$NPORT;|" \
        -e "s|server 127.0.0.1:8081 |server 127.0.0.1:$B_PORT |" -e "s|server 127.0.0.1:8082 |server 127.0.0.1:$C_PORT |" \
        -e "s|/var/log/nginx/|$TMP/nginx-|" -e "s|worker_processes auto;|worker_processes 1;|" \
        -e "s|^http {|http {\n    client_body_temp_path $TMP/ngx-body; proxy_temp_path $TMP/ngx-proxy; fastcgi_temp_path $TMP/ngx-fcgi; uwsgi_temp_path $TMP/ngx-uwsgi; scgi_temp_path $TMP/ngx-scgi;|" \
        deploy/nginx.conf
} >"$TMP/nginx.conf"
for w in "listen 127.0.0.1:$NPORT;" "server 127.0.0.1:$B_PORT " "server 127.0.0.1:$C_PORT " "$TMP/nginx-rgemma.access.log"; do
    grep -qF "$w" "$TMP/nginx.conf" || fail "deploy/nginx.conf changed: could not set '$w' in it"
done
"$NGINX" -t -p "$TMP" -e "$TMP/nginx-startup.log" -c "$TMP/nginx.conf" >"$TMP/nginx-t.log" 2>&1 ||
    fail "nginx -t refuses deploy/nginx.conf: $(cat "$TMP/nginx-t.log")"
"$NGINX" -p "$TMP" -e "$TMP/nginx-startup.log" -c "$TMP/nginx.conf" -g 'daemon off;' >"$TMP/nginx.out" 2>&1 &
NGINX_PID=$!
N_URL=http://127.0.0.1:$NPORT
_tries=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$N_URL/health")" = 200 ]; do
    _tries=$((_tries + 1))
    [ $_tries -lt 100 ] || fail "nginx did not start: $(cat "$TMP/nginx.out" "$TMP/nginx-startup.log")"
    sleep 0.1
done
# a stream through nginx arrives whole; the request id comes back
curl -s -N -D "$TMP/hdr" -H 'X-Request-Id: via-nginx-1' -H 'X-Conversation-Id: conv-7' \
    --data-binary '{"messages":[{"role":"user","content":"Count to ten."}],"max_tokens":20,"stream":true}' \
    "$N_URL/v1/chat/completions" >"$TMP/s.sse"
sse "$TMP/s.sse"
check 'r["finish"] in ("stop", "length") and r["usage"] is not None' "stream through nginx" "$TMP/sse.json"
grep -qi '^X-Request-Id: via-nginx-1' "$TMP/hdr" || fail "X-Request-Id did not come back through nginx: $(cat "$TMP/hdr")"
sleep 0.3
grep -q 'request id via-nginx-1' "$TMP/B.log" "$TMP/C.log" || fail "the request id is not in a replica's log"

# a drain on C during 8 live streams
# (streams 1 and 2 are chat turns: their states must reach Redis before C stops)
keys_before=$(redis-cli -p "$RPORT" dbsize)
for i in 1 2 3 4 5 6 7 8; do
    if [ "$i" -le 2 ]; then
        curl -s -N --data-binary '{"messages":[{"role":"user","content":"Chat stream '"$i"'"}],"max_tokens":6000,"ignore_eos":true,"temperature":0,"stream":true}' \
            "$C_URL/v1/chat/completions" >"$TMP/live$i.sse" &
    else
        curl -s -N --data-binary '{"prompt":"Stream '"$i"' goes on","max_tokens":6000,"ignore_eos":true,"temperature":0,"stream":true}' \
            "$C_URL/v1/completions" >"$TMP/live$i.sse" &
    fi
    eval "LIVE$i=\$!"
done
_tries=0
until [ "$(curl -s "$C_URL/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["slots_processing"])')" = 8 ]; do
    _tries=$((_tries + 1))
    [ $_tries -lt 100 ] || fail "the 8 streams did not all start on C"
    sleep 0.05
done
kill -TERM "$C_PID"
sleep 0.2
[ "$(curl -s -o "$TMP/out" -w '%{http_code}' "$C_URL/health")" = 503 ] || fail "/health of a draining replica is not 503: $(cat "$TMP/out")"
check 'r["status"] == "draining"' "draining /health"
[ "$(curl -s -o "$TMP/out" -w '%{http_code}' "$C_URL/ready")" = 503 ] || fail "/ready of a draining replica is not 503"
code=$(curl -s -o "$TMP/out" -w '%{http_code}' --data-binary '{"prompt":"x","max_tokens":2}' "$C_URL/v1/completions")
[ "$code" = 503 ] || fail "a draining replica took a new request (HTTP $code)"
# new requests through nginx, under several conversation keys: all answered (by B)
b_before=$(metric "$B_URL" 'rgemma_requests_total{endpoint="/v1/chat/completions"}')
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    code=$(curl -s -o "$TMP/out" -w '%{http_code}' -H "X-Conversation-Id: drain-$i" \
        --data-binary '{"messages":[{"role":"user","content":"Hello during the drain, '"$i"'"}],"max_tokens":4}' "$N_URL/v1/chat/completions")
    [ "$code" = 200 ] || fail "a request through nginx during the drain got HTTP $code: $(cat "$TMP/out")"
done
b_after=$(metric "$B_URL" 'rgemma_requests_total{endpoint="/v1/chat/completions"}')
[ $((b_after - b_before)) = 12 ] || fail "B answered $((b_after - b_before)) of the 12 requests made during the drain"
# some of the 12 keys hash to C (all to B: 1 chance in 4096): C's 503 sent them on to B
retried=$(grep -c 'upstream_status=503, 200' "$TMP/nginx-rgemma.access.log")
[ "$retried" -gt 0 ] || fail "no request went to the draining replica first and on to B: $(tail -n 12 "$TMP/nginx-rgemma.access.log")"
kill -0 "$C_PID" 2>/dev/null || fail "C stopped before its streams finished (the streams are too short for this machine?)"
for i in 1 2 3 4 5 6 7 8; do
    eval "wait \$LIVE$i" || fail "live stream $i: curl failed"
    sse "$TMP/live$i.sse"
    check 'r["finish"] == "length" and r["usage"]["completion_tokens"] == 6000 and r["error"] is None' \
        "live stream $i during the drain" "$TMP/sse.json"
done
wait "$C_PID" || fail "the drained replica exited with an error"
grep -q 'rgemma serve: drained, stopping' "$TMP/C.log" || fail "C did not report a complete drain: $(tail -n 3 "$TMP/C.log")"
# the 2 chat turns C finished while draining and B's 12: all in Redis
keys_after=$(redis-cli -p "$RPORT" dbsize)
[ $((keys_after - keys_before)) = 14 ] || fail "$((keys_after - keys_before)) states reached Redis during the drain, expected 14"
echo "drain: 8 of 8 live streams finished (6000 tokens each), 12 of 12 new requests through nginx answered by the other replica ($retried after a 503 from the draining one)"
kill -TERM "$B_PID"
wait "$B_PID" || fail "B did not stop cleanly"
echo "cluster: all checks passed"
