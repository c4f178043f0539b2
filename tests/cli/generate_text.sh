#!/bin/sh
# rgemma generate with text: prompt echo, streaming, reproducible sampling,
# top-k 1 == greedy, -f == -p, stop strings (never printed), Ctrl-C, and
# one-line errors for bad input.
set -e
T=$(mktemp -d /tmp/rgemma-cli-text.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. tests/cli/lib/small_model.sh
small_model "$T/m" || fail "synth"
M="$T/m"
G="--temp 0 --ignore-eos"

out=$("$RGEMMA" generate -m "$M" -p "The license" -n 12 $G 2>"$T/err") || fail "generate: $(cat "$T/err")"
case "$out" in "The license"?*) ;; *) fail "output must start with the prompt and continue: '$out'" ;; esac
grep -q "^prompt: .*tok/s" "$T/err" && grep -q "^generated: *12 tokens" "$T/err" || fail "report: $(cat "$T/err")"
cont=$("$RGEMMA" generate -m "$M" -p "The license" -n 12 $G --no-display-prompt 2>/dev/null)
[ "The license$cont" = "$out" ] || fail "--no-display-prompt: '$cont' vs '$out'"

# -f FILE and -f - give what -p gives
printf 'The license' >"$T/p.txt"
[ "$("$RGEMMA" generate -m "$M" -f "$T/p.txt" -n 12 $G 2>/dev/null)" = "$out" ] || fail "-f FILE differs from -p"
[ "$("$RGEMMA" generate -m "$M" -f - -n 12 $G <"$T/p.txt" 2>/dev/null)" = "$out" ] || fail "-f - differs from -p"

# sampling: a seed reproduces, another seed differs; --top-k 1 is greedy
S="-n 40 --ignore-eos --temp 1.2 --top-k 0 --top-p 1 --min-p 0"
a=$("$RGEMMA" generate -m "$M" -p "Hello" $S -s 42 2>/dev/null)
b=$("$RGEMMA" generate -m "$M" -p "Hello" $S -s 42 2>/dev/null)
c=$("$RGEMMA" generate -m "$M" -p "Hello" $S -s 43 2>/dev/null)
[ "$a" = "$b" ] || fail "same seed, different text"
[ "$a" != "$c" ] || fail "different seeds, same text"
k1=$("$RGEMMA" generate -m "$M" -p "Hello" -n 20 --ignore-eos --top-k 1 --temp 0.9 -s 5 2>/dev/null)
g=$("$RGEMMA" generate -m "$M" -p "Hello" -n 20 $G 2>/dev/null)
[ "$k1" = "$g" ] || fail "--top-k 1 ('$k1') differs from greedy ('$g')"

# stop strings: a piece of the greedy text stops it; nothing from it on is printed
full=$("$RGEMMA" generate -m "$M" -p "The license" -n 40 $G --no-display-prompt 2>/dev/null)
printf '%s' "$full" >"$T/full.txt"
stop=$(python3 -c "
import sys
t = open(sys.argv[1], encoding='utf-8', errors='replace').read()
for k in range(4, len(t) - 3):
    s = t[k:k + 3]
    if s.isprintable() and '\ufffd' not in s and s.strip() == s and s:
        print(s); break
" "$T/full.txt")
[ -n "$stop" ] || fail "no usable stop string in '$full'"
want=$(python3 -c "
import sys
t = open(sys.argv[1], encoding='utf-8', errors='replace').read()
print(t[:t.find(sys.argv[2])])" "$T/full.txt" "$stop")
got=$("$RGEMMA" generate -m "$M" -p "The license" -n 40 $G --no-display-prompt --stop "$stop" --stop "zzzzzz" 2>"$T/err")
[ "$got" = "$want" ] || fail "--stop '$stop': got '$got', want '$want'"
grep -q "stop: stop string" "$T/err" || fail "stop reason: $(cat "$T/err")"

# invalid UTF-8 in the prompt is the tokenizer's business (byte pieces): it runs
printf 'caf\351 \377\376 ok' >"$T/bad.txt"
"$RGEMMA" generate -m "$M" -f "$T/bad.txt" -n 4 $G >/dev/null 2>"$T/err" || fail "invalid UTF-8 prompt: $(cat "$T/err")"

# Ctrl-C: stops cleanly, prints the report, exits 130
"$RGEMMA" generate -m "$M" -p "Hello" -n -1 --ignore-eos >"$T/out" 2>"$T/err" &
pid=$!
sleep 1
kill -INT $pid
rc=0
wait $pid || rc=$?
[ "$rc" -eq 130 ] || fail "Ctrl-C: exit $rc, want 130 ($(cat "$T/err"))"
grep -q "stop: interrupted" "$T/err" || fail "Ctrl-C: no report: $(cat "$T/err")"

# bad input: one line on stderr, non-zero exit
one_line_error() { # $1 = expected text; the rest = command
    w=$1
    shift
    if "$@" >/dev/null 2>"$T/err"; then fail "accepted: $*"; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "$*: expected one line, got: $(cat "$T/err")"
    grep -q "^rgemma: .*$w" "$T/err" || fail "$*: expected '$w', got: $(cat "$T/err")"
}
one_line_error "no tokenizer" "$RGEMMA" generate -m tests/data/golden/dev_4layer -p "Hello" -n 2
one_line_error "cannot open" "$RGEMMA" generate -m "$M" -f "$T/missing.txt" -n 2
one_line_error "empty" "$RGEMMA" generate -m "$M" -p "" -n 2
: >"$T/empty.txt"
one_line_error "empty" "$RGEMMA" generate -m "$M" -f "$T/empty.txt" -n 2
one_line_error "no such model" "$RGEMMA" generate -m "$T/nothing" -p "Hello" -n 2
one_line_error "one of" "$RGEMMA" generate -m "$M" -p "a" --prompt-ids 2 -n 2
one_line_error "stop" "$RGEMMA" generate -m "$M" -p "a" --stop "" -n 2
one_line_error "tokenizer" "$RGEMMA" generate -m "$M" -p "a" --tokenizer "$T/none.model" -n 2
echo "generate text: ok"
