#!/bin/sh
# rgemma generate --save-state / --load-state: a run split in two equals the
# uninterrupted run token for token, with float32 and with float16 attention
# windows (--kv-type f16); the file has a constant size; a state of another
# model or window type, or a corrupt file, is refused with one line, and so are
# a bad --kv-type on every command that takes it and q8_0 windows for a head
# dimension that is not a multiple of 32.
set -e
T=$(mktemp -d /tmp/rgemma-cli-state.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=tests/data/golden/dev_6layer
P=2,115,257,380,183,403,345,116,27,200,119,439,498,26,337,4,352,140
S="--temp 1.0 --top-k 0 --top-p 1 --min-p 0 -s 7 --ignore-eos"

full=$("$RGEMMA" generate -m $M --prompt-ids $P -n 40 $S 2>/dev/null)
[ "$(echo "$full" | tr ',' '\n' | wc -l)" -eq 40 ] || fail "expected 40 ids, got $full"

# greedy: split 15 + 25 (a sampled run continues with a fresh RNG, so compare greedy)
g_full=$("$RGEMMA" generate -m $M --prompt-ids $P -n 40 --temp 0 --ignore-eos 2>/dev/null)
a=$("$RGEMMA" generate -m $M --prompt-ids $P -n 15 --temp 0 --ignore-eos --save-state "$T/s1" 2>"$T/err") \
    || fail "save: $(cat "$T/err")"
grep -q "saved state to $T/s1" "$T/err" || fail "no save message: $(cat "$T/err")"
b=$("$RGEMMA" generate -m $M --load-state "$T/s1" -n 25 --temp 0 --ignore-eos --save-state "$T/s2" 2>"$T/err") \
    || fail "load: $(cat "$T/err")"
[ "$a,$b" = "$g_full" ] || fail "split run $a,$b != uninterrupted $g_full"
[ "$(stat -c %s "$T/s1")" -eq "$(stat -c %s "$T/s2")" ] || fail "state file size changed with the position"

# the report on stderr
grep -q "^prompt: .*tok/s" "$T/err" && grep -q "^generated: .*tok/s" "$T/err" && grep -q "^state: " "$T/err" \
    && grep -q "^peak RSS: " "$T/err" || fail "report missing: $(cat "$T/err")"

# refusals: one line, non-zero exit
one_line_error() { # $1 = expected text; the rest = command
    want=$1
    shift
    if "$@" >/dev/null 2>"$T/err"; then fail "accepted: $*"; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "$*: expected one line, got: $(cat "$T/err")"
    grep -q "^rgemma: .*$want" "$T/err" || fail "$*: expected '$want', got: $(cat "$T/err")"
}
one_line_error "another model configuration" "$RGEMMA" generate -m tests/data/golden/dev_3layer_w80 --load-state "$T/s1" -n 2

# float16 windows: the split run equals the uninterrupted one (a chunk's own
# keys are rounded like the window's), the file is smaller, and a file of the
# other window type is refused naming it and both types
h_full=$("$RGEMMA" generate -m $M --prompt-ids $P -n 40 --temp 0 --ignore-eos --kv-type f16 2>/dev/null)
a=$("$RGEMMA" generate -m $M --prompt-ids $P -n 15 --temp 0 --ignore-eos --kv-type f16 --save-state "$T/h1" \
    2>"$T/err") || fail "save f16: $(cat "$T/err")"
grep -q "^state: .*f16 window" "$T/err" || fail "report does not name the f16 window: $(cat "$T/err")"
b=$("$RGEMMA" generate -m $M --load-state "$T/h1" -n 25 --temp 0 --ignore-eos --kv-type f16 2>"$T/err") \
    || fail "load f16: $(cat "$T/err")"
[ "$a,$b" = "$h_full" ] || fail "f16 split run $a,$b != uninterrupted $h_full"
[ "$(stat -c %s "$T/h1")" -lt "$(stat -c %s "$T/s1")" ] || fail "the f16 state file is not smaller"
one_line_error "$T/h1: the state's attention window is f16, this model's states are f32" \
    "$RGEMMA" generate -m $M --load-state "$T/h1" -n 2
one_line_error "$T/s1: the state's attention window is f32, this model's states are f16" \
    "$RGEMMA" generate -m $M --load-state "$T/s1" -n 2 --kv-type f16
for cmd in generate chat perplexity eval serve bench; do
    one_line_error "$cmd: --kv-type must be f32, f16 or q8_0 (got \"q4_0\")" "$RGEMMA" $cmd -m $M --kv-type q4_0
done
# Q8_0 windows need a head dimension that is a multiple of 32 (this model's is 16)
one_line_error "q8_0 needs a head dimension that is a multiple of 32 (this model's is 16)" \
    "$RGEMMA" generate -m $M --prompt-ids $P -n 2 --kv-type q8_0
cp "$T/s1" "$T/bad"
printf 'X' | dd of="$T/bad" bs=1 seek=500 conv=notrunc 2>/dev/null
one_line_error "checksum" "$RGEMMA" generate -m $M --load-state "$T/bad" -n 2
head -c 100 "$T/s1" >"$T/short"
one_line_error "not an rgemma state file\|truncated" "$RGEMMA" generate -m $M --load-state "$T/short" -n 2
one_line_error "cannot open" "$RGEMMA" generate -m $M --load-state "$T/none" -n 2
one_line_error "no such model" "$RGEMMA" generate -m "$T/nomodel" --prompt-ids 2,3 -n 2
one_line_error "config.json" "$RGEMMA" generate -m "$T" --prompt-ids 2,3 -n 2
one_line_error "outside the vocabulary" "$RGEMMA" generate -m $M --prompt-ids 2,99999 -n 2
one_line_error "prompt-ids" "$RGEMMA" generate -m $M --prompt-ids 2,,3 -n 2
one_line_error "prompt-ids" "$RGEMMA" generate -m $M --prompt-ids "" -n 2
one_line_error "give a prompt" "$RGEMMA" generate -m $M -n 2
one_line_error "temp" "$RGEMMA" generate -m $M --prompt-ids 2 --temp -1
one_line_error "top-p" "$RGEMMA" generate -m $M --prompt-ids 2 --top-p 1.5
one_line_error "-n" "$RGEMMA" generate -m $M --prompt-ids 2 -n many
one_line_error "unknown option" "$RGEMMA" generate -m $M --prompt-ids 2 --bogus
one_line_error "missing value\|unknown option" "$RGEMMA" generate -m $M --prompt-ids
echo "generate state/bad input: ok"
