#!/bin/sh
# rgemma chat keeps the state between turns: turn 2 processes only its own
# new tokens, and its reply equals what a fresh run over the whole history
# gives (same seed: the sampler restarts each turn and penalties are off). Tested with a pipe and through a pseudo-terminal (util-linux
# `script`), plus --system, /reset and --save-state / --load-state.
set -e
T=$(mktemp -d /tmp/rgemma-cli-chat.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. tests/cli/lib/small_model.sh
small_model "$T/m" || fail "synth"
M="$T/m"
S="--temp 1 -s 7 --top-k 0 --top-p 1 --min-p 0"
C="-m $M $S -n 6 --verbose-prompt"

ids() { sed -n "s/^$1 ids: //p" "$T/err" | sed -n "${2}p"; }
field() { sed -n "s/^\[turn $1: processed \([0-9]*\) new prompt tokens.*the state holds \([0-9]*\) tokens.*/\\$2/p" "$T/err"; }
count() { echo "$1" | tr ',' '\n' | grep -c .; }

check_two_turns() { # $1 = how ("pipe" or "pty"); reads $T/err
    [ "$(grep -c '^\[turn ' "$T/err")" -eq 2 ] || fail "$1: expected 2 turns: $(cat "$T/err")"
    p1=$(ids prompt 1)
    r1=$(ids reply 1)
    p2=$(ids prompt 2)
    r2=$(ids reply 2)
    # turn 2 processed exactly its own ids: the pending last reply token + the new turn
    [ "$(field 2 1)" -eq "$(count "$p2")" ] || fail "$1: turn 2 processed $(field 2 1), its ids are $p2"
    [ "$(field 2 1)" -lt "$(field 2 2)" ] || fail "$1: turn 2 re-processed the history"
    [ "${p2%%,*}" = "${r1##*,}" ] || fail "$1: turn 2 must open with the pending token ${r1##*,}: $p2"
    [ "${p1%%,*}" = 2 ] || fail "$1: BOS once at the start: $p1"
    case ",$p2," in *,2,*) fail "$1: BOS again in turn 2: $p2" ;; esac
    # the state holds the whole history: prompt 1 + reply 1 (but its pending last) + prompt 2 + reply 2 (same)
    want=$(($(count "$p1") + $(count "$r1") - 1 + $(count "$p2") + $(count "$r2") - 1))
    [ "$(field 2 2)" -eq "$want" ] || fail "$1: state holds $(field 2 2) tokens, expected $want"
    # a fresh run over the whole history replies the same
    hist="$p1,${r1%,*},$p2"
    fresh=$("$RGEMMA" generate -m "$M" --prompt-ids "$hist" -n 6 $S 2>/dev/null)
    case "$r2" in "$fresh"*) ;; *) fail "$1: kept-state reply $r2 != fresh run over the history $fresh" ;; esac
}

# with a pipe
printf 'Hello there\nAnd what about the license?\n' | "$RGEMMA" chat $C >"$T/out" 2>"$T/err" || fail "chat: $(cat "$T/err")"
check_two_turns pipe
# the turn format: <start_of_turn>=4 user\n ... <end_of_turn>=5 \n <start_of_turn> model\n
p1=$(ids prompt 1)
user=$(echo "$p1" | cut -d, -f2)
[ "$user" = 4 ] || fail "turn must open with <start_of_turn> after BOS: $p1"

# through a pseudo-terminal: the prompt "> " is shown, input is echoed
{ sleep 1; printf 'Hello there\n'; sleep 2; printf 'And what about the license?\n'; sleep 2; printf '/exit\n'; } |
    script -q -e -c "$RGEMMA chat $C 2>$T/err" /dev/null >"$T/tty" || fail "chat in a pty: $(cat "$T/err")"
grep -q "> " "$T/tty" || fail "no prompt on the terminal: $(cat "$T/tty")"
check_two_turns pty

# --system is folded into the first user turn (Gemma has no system role)
printf 'Hello there\n' | "$RGEMMA" chat $C --system "Be brief." >/dev/null 2>"$T/err"
ps=$(ids prompt 1)
[ "$(count "$ps")" -gt "$(count "$p1")" ] || fail "--system did not reach the prompt: $ps"
case "$ps" in 2,4,*) ;; *) fail "--system must stay inside the user turn: $ps" ;; esac

# /reset starts over: BOS again, nothing pending
printf 'Hello there\n/reset\nHello there\n' | "$RGEMMA" chat $C >/dev/null 2>"$T/err"
[ "$(ids prompt 1)" = "$(ids prompt 2)" ] || fail "/reset: $(ids prompt 1) vs $(ids prompt 2)"

# a conversation saved and continued in another process equals one process
printf 'Hello there\n' | "$RGEMMA" chat $C --save-state "$T/conv" >/dev/null 2>"$T/err"
printf 'And what about the license?\n' | "$RGEMMA" chat $C --load-state "$T/conv" >/dev/null 2>"$T/err2"
printf 'Hello there\nAnd what about the license?\n' | "$RGEMMA" chat $C >/dev/null 2>"$T/err"
[ "$(sed -n 's/^reply ids: //p' "$T/err2")" = "$(ids reply 2)" ] || fail "saved conversation continues differently"

# bad input
if "$RGEMMA" chat -m tests/data/golden/dev_4layer </dev/null 2>"$T/err"; then fail "chat without tokenizer accepted"; fi
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^rgemma: chat: .*no tokenizer" "$T/err" || fail "$(cat "$T/err")"
echo "chat: ok"
