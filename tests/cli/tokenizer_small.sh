#!/bin/sh
# rgemma tokenize / detokenize on the small SentencePiece model: every golden
# line through --jsonl (the way other models and strings are checked), the
# invalid UTF-8 cases ({"hex": ...} lines), the decode cases, plain arguments,
# and clear one-line errors for bad input.
set -eu
RGEMMA=${RGEMMA:-build/rgemma}
D=tests/data/tokenizer
M=$D/small_bpe.model
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
# The golden array under key $2 of each line of $1, as rgemma writes it: {"ids": [...]}
golden_ids() { sed -n "s/.*[^\\\\]\"$2\": \(\[[^]]*\]\).*/{\"ids\": \1}/p" "$1"; }
# The "text" string of each line of $1: {"text": "..."}
golden_texts() { sed -n 's/.*[^\\]"text": \("\([^"\\]\|\\.\)*"\).*/{"text": \1}/p' "$1"; }
same() { # $1 = what, $2 = got, $3 = expected; both must have $4 lines
    [ "$(wc -l <"$3")" -eq "$4" ] || fail "$1: expected $4 lines in the golden file"
    cmp -s "$2" "$3" || { diff "$2" "$3" | head -5 >&2; fail "$1 differs"; }
}

"$RGEMMA" tokenize --tokenizer "$M" --jsonl $D/small_bpe.golden.jsonl >"$tmp/got"
golden_ids $D/small_bpe.golden.jsonl ids >"$tmp/want"
same "tokenize --jsonl small_bpe.golden.jsonl" "$tmp/got" "$tmp/want" 222

"$RGEMMA" tokenize --tokenizer "$M" --jsonl - <$D/invalid_utf8.jsonl >"$tmp/got"
golden_ids $D/invalid_utf8.jsonl small_bpe_ids >"$tmp/want"
same "tokenize --jsonl invalid_utf8.jsonl" "$tmp/got" "$tmp/want" 15

"$RGEMMA" detokenize --tokenizer "$M" --jsonl $D/small_bpe.decode.jsonl >"$tmp/got"
golden_texts $D/small_bpe.decode.jsonl >"$tmp/want"
same "detokenize --jsonl small_bpe.decode.jsonl" "$tmp/got" "$tmp/want" 39

# the decoded golden texts come back as the same JSON strings
"$RGEMMA" detokenize --tokenizer "$M" --jsonl $D/small_bpe.golden.jsonl >"$tmp/got"
sed -n 's/.*[^\\]"decoded": \("\([^"\\]\|\\.\)*"\).*/{"text": \1}/p' $D/small_bpe.golden.jsonl >"$tmp/want"
same "detokenize --jsonl small_bpe.golden.jsonl" "$tmp/got" "$tmp/want" 222

[ "$("$RGEMMA" tokenize --tokenizer "$M" --bos --eos "Hello, world!")" = "2 966 502 337 935 287 268 599 39 1" ] ||
    fail "tokenize --bos --eos TEXT"
[ "$(printf 'Hello, world!' | "$RGEMMA" tokenize --tokenizer "$M")" = "966 502 337 935 287 268 599 39" ] ||
    fail "tokenize from stdin"
[ "$("$RGEMMA" detokenize --tokenizer "$M" "[2, 966, 502, 337, 935, 287, 268, 599, 39]")" = "Hello, world!" ] ||
    fail "detokenize IDS"
"$RGEMMA" tokenize --convert "$M" "$tmp/copy.model" 2>/dev/null
[ "$("$RGEMMA" tokenize --tokenizer "$tmp/copy.model" "Hello, world!")" = "966 502 337 935 287 268 599 39" ] ||
    fail "tokenize with the --convert output"

# errors: one line "rgemma: ..." on stderr, non-zero exit
expect_error() { # $1 = substring of the message, then the command
    want=$1
    shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then fail "succeeded: $*"; fi
    [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^rgemma: .*$want" "$tmp/err" ||
        { cat "$tmp/err" >&2; fail "message of: $*"; }
}
head -c 5000 "$M" >"$tmp/trunc.model"
expect_error "truncated" "$RGEMMA" tokenize --tokenizer "$tmp/trunc.model" x
expect_error "no-such.model: cannot open" "$RGEMMA" tokenize --tokenizer "$tmp/no-such.model" x
expect_error "id 1000 is out of range" "$RGEMMA" detokenize --tokenizer "$M" 5 1000
printf '{"text": "a"}\n{"txt": "b"}\n' >"$tmp/bad.jsonl"
expect_error "bad.jsonl:2: no \"text\"" "$RGEMMA" tokenize --tokenizer "$M" --jsonl "$tmp/bad.jsonl"
printf '{"text": "a\n' >"$tmp/bad.jsonl"
expect_error "bad.jsonl:1: JSON: unterminated string" "$RGEMMA" tokenize --tokenizer "$M" --jsonl "$tmp/bad.jsonl"
# -t is the thread count, as in every command: the tokenizer comes by
# --tokenizer PATH or from the model (-m)
[ "$("$RGEMMA" tokenize -t 2 --tokenizer "$M" "Hello, world!")" = "966 502 337 935 287 268 599 39" ] ||
    fail "tokenize -t 2 --tokenizer"
expect_error "tokenize: --threads must be an integer" "$RGEMMA" tokenize -t "$M" "Hello"
expect_error "detokenize: --threads must be an integer" "$RGEMMA" detokenize -t "$M" 5
expect_error "tokenize: no tokenizer: give -m MODEL or --tokenizer PATH" "$RGEMMA" tokenize "Hello"
expect_error "detokenize: no tokenizer: give -m MODEL or --tokenizer PATH" "$RGEMMA" detokenize 5
expect_error "tokenize: unknown option or missing value: --tokenizer" "$RGEMMA" tokenize --tokenizer
mkdir "$tmp/model" && cp "$M" "$tmp/model/tokenizer.model"
[ "$("$RGEMMA" tokenize -m "$tmp/model" "Hello, world!")" = "966 502 337 935 287 268 599 39" ] || fail "tokenize -m"
[ "$("$RGEMMA" detokenize -m "$tmp/model/model.safetensors" 966 502 337 935 287 268 599 39)" = "Hello, world!" ] ||
    fail "detokenize -m FILE: the tokenizer beside it"
expect_error "has no tokenizer.model or tokenizer.json" "$RGEMMA" tokenize -m tests/unit "Hello"
echo "tokenizer CLI on small_bpe.model: all golden lines match"
