#!/bin/sh
# Check the quantised block layouts and GGUF files against ggml's own code
# (scripts/ggml-compat/check.c): LLAMA is a llama.cpp checkout with a build
# (build/bin/libggml-base.so). Run from the repository root after `make`:
#   LLAMA=/path/to/llama.cpp sh scripts/check-ggml-compat.sh [FILE.gguf ...]
set -eu
LLAMA=${LLAMA:?set LLAMA to a llama.cpp checkout with a build}
BUILD=${RGEMMA_BUILD:-build}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
${CC:-cc} -std=gnu11 -O1 -fopenmp -I"$LLAMA/ggml/include" -Iinclude -Isrc scripts/ggml-compat/check.c \
    "$BUILD/librgemma.a" -L"$LLAMA/build/bin" -Wl,-rpath,"$LLAMA/build/bin" -lggml-base \
    -lcjson -lmicrohttpd -lhiredis -lcurl -lm -lpthread -o "$OUT/check"
"$OUT/check"
[ $# -eq 0 ] || "$OUT/check" "$@"
