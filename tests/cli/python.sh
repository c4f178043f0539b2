#!/bin/sh
# The Python package (python/rgemma, ctypes over librgemma.so) with Debian's
# python3 and the standard library only: python/tests/test_rgemma.py. Under a
# sanitized build the sanitizer runtimes are preloaded into python3.
set -eu
BUILD=${RGEMMA_BUILD:-build}
RGEMMA=${RGEMMA:-$BUILD/rgemma}
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$BUILD/librgemma.so" ] || fail "$BUILD/librgemma.so not built"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. tests/cli/lib/small_model.sh
small_model "$T/small" || fail "could not write the small model"

san=""
for rt in libasan libubsan; do
    if readelf -d "$BUILD/librgemma.so" | grep -q "NEEDED.*\[$rt\.so"; then
        lib=$(cc -print-file-name="$rt.so")
        [ -f "$lib" ] || fail "$BUILD/librgemma.so needs $rt.so, not found"
        san="$san $lib"
    fi
done
cflags=""
if [ -n "$san" ]; then
    echo "note: sanitized build: python3 runs with$san preloaded (leak checks off: the interpreter's own)"
    export LD_PRELOAD="${san# }"
    export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    cflags="-fsanitize=address,undefined"
fi

# the struct layouts the ctypes declarations must match
cc $cflags -Iinclude -o "$T/abi_layout" python/tests/abi_layout.c || fail "abi_layout.c"
"$T/abi_layout" >"$T/abi" || fail "abi_layout"

export RGEMMA_LIB="$BUILD/librgemma.so" RGEMMA_TEST_SMALL_MODEL="$T/small" RGEMMA_TEST_ABI="$T/abi"
export PYTHONPATH="python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1
python3 -m unittest -v python/tests/test_rgemma.py 2>&1
