#!/bin/sh
# rgemma serve's continuous batching: 6 clients at once on 4 slots (2 wait
# in the queue and join as others leave), with different prompts, lengths,
# and a mix of greedy and seeded sampling, streamed and not, get exactly the
# text each gets alone; /metrics shows steps that carried several sequences.
. tests/cli/server_common.inc
make_model
metric() { curl -s "$URL/metrics" | sed -n "s/^$1 //p"; }

body() { # body I: request I of the six
    case $1 in
    0) echo '{"prompt":"The river","max_tokens":40,"temperature":0,"ignore_eos":true}' ;;
    1) echo '{"prompt":"Once upon a time there was a small town by the sea where","max_tokens":25,"temperature":0.9,"seed":11,"ignore_eos":true}' ;;
    2) echo '{"messages":[{"role":"user","content":"Tell me about the mountains and the weather"}],"max_tokens":60,"temperature":0,"ignore_eos":true}' ;;
    3) echo '{"prompt":"A","max_tokens":7,"temperature":0.7,"seed":5,"top_k":0,"ignore_eos":true}' ;;
    4) echo '{"messages":[{"role":"user","content":"Count"}],"max_tokens":33,"temperature":1.1,"seed":3,"ignore_eos":true,"stream":true}' ;;
    5) echo '{"prompt":"Hello, world! Hello, world! Hello, world! Hello, world! Hello, world!","max_tokens":50,"temperature":0,"ignore_eos":true,"stream":true}' ;;
    esac
}
path() { case $1 in 2 | 4) echo /v1/chat/completions ;; *) echo /v1/completions ;; esac; }
text_of() { # text_of FILE I: the generated text of an answer or a stream
    if [ "$2" -ge 4 ]; then
        sse "$1"
        json 'r["text"]' "$TMP/sse.json"
    else
        json 'r["choices"][0].get("text", r["choices"][0].get("message", {}).get("content"))' "$1"
    fi
}

start_server -np 4 --queue 8 --cache-states 0
for i in 0 1 2 3 4 5; do
    curl -s -N -H 'Content-Type: application/json' --data-binary "$(body $i)" "$URL$(path $i)" >"$TMP/alone$i" ||
        fail "request $i alone failed"
    text_of "$TMP/alone$i" $i >"$TMP/alone$i.txt"
    [ -s "$TMP/alone$i.txt" ] || fail "request $i alone gave no text"
done
steps_before=$(metric rgemma_batch_size_count)

# the six at once, three rounds (the steps they share differ each time)
for round in 1 2 3; do
    pids=""
    for i in 0 1 2 3 4 5; do
        curl -s -N -H 'Content-Type: application/json' --data-binary "$(body $i)" "$URL$(path $i)" \
            >"$TMP/together$i" &
        pids="$pids $!"
    done
    for p in $pids; do wait "$p" || fail "a concurrent request failed (round $round)"; done
    for i in 0 1 2 3 4 5; do
        text_of "$TMP/together$i" $i >"$TMP/together$i.txt"
        cmp -s "$TMP/alone$i.txt" "$TMP/together$i.txt" ||
            fail "round $round: request $i differs when batched: '$(cat "$TMP/together$i.txt")' vs alone '$(cat "$TMP/alone$i.txt")'"
    done
done

# steps that carried more than one sequence: fewer steps counted as <= 1
count=$(metric rgemma_batch_size_count)
le1=$(curl -s "$URL/metrics" | sed -n 's/^rgemma_batch_size_bucket{le="1"} //p')
le4=$(curl -s "$URL/metrics" | sed -n 's/^rgemma_batch_size_bucket{le="4"} //p')
sum=$(metric rgemma_batch_size_sum)
[ -n "$count" ] && [ "$count" -gt "$steps_before" ] || fail "no batched steps counted ($count)"
[ "$le1" -lt "$count" ] || fail "no step carried more than one sequence (le=1: $le1 of $count)"
[ "$le4" = "$count" ] || fail "a step carried more sequences than the 4 slots ($le4 of $count within 4)"
[ "$sum" -gt "$count" ] || fail "batch size sum $sum not above the step count $count"
curl -s "$URL/metrics" | grep -q '^rgemma_step_seconds_bucket{le="+Inf"} '"$count"'$' || fail "step time histogram missing"

# /health is idle again and the server stops cleanly
[ "$(get /health)" = 200 ] || fail "health"
check 'r["slots_processing"] == 0 and r["queue_depth"] == 0' "all slots idle at the end"
stop_server
echo "server_batching: all checks passed"
