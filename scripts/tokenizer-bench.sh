#!/bin/sh
# Tokenizer speed: load time of a tokenizer (default: the cached Gemma
# tokenizer.model, 256000 pieces) and encode/decode MB/s on about 4 MB of
# mixed text: licenses, raw roff man pages, Debian changelogs, and the golden
# JSON Lines (code, numbers, many scripts and emoji).
# usage: sh scripts/tokenizer-bench.sh [TOKENIZER]     env: RGEMMA (rgemma binary)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
rgemma=${RGEMMA:-$root/build/rgemma}
tok=${1:-$(sh "$root/scripts/get-gemma-tokenizer.sh")/tokenizer.model}
text=$(mktemp)
trap 'rm -f "$text"' EXIT
trap 'exit 1' INT TERM
{
    cat /usr/share/common-licenses/* "$root"/tests/data/tokenizer/*.jsonl
    for f in $(ls /usr/share/man/man1/*.gz | sort); do zcat "$f"; done | head -c 1500000
    for f in $(ls /usr/share/doc/*/changelog*.gz | sort); do zcat "$f"; done
} | head -c 4000000 >"$text"
"$rgemma" tokenize --tokenizer "$tok" --bench "$text"
