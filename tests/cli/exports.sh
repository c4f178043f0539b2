#!/bin/sh
# librgemma.so exports exactly the functions declared in include/rgemma.h (no
# internal symbol, no data, no header function left hidden), and its soname
# comes from the header's version numbers.
set -eu
BUILD=${RGEMMA_BUILD:-build}
SO=$BUILD/librgemma.so
fail() { echo "FAIL: $*"; exit 1; }
[ -f "$SO" ] || fail "$SO not built"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

python3 scripts/header-functions.py include/rgemma.h >"$T/header"
# every defined dynamic symbol, functions or not (sanitizer builds: theirs too)
nm -D --defined-only "$SO" | awk '{print $NF}' | sort -u >"$T/exported"
[ -s "$T/header" ] || fail "no function found in include/rgemma.h"
if ! cmp -s "$T/header" "$T/exported"; then
    echo "declared in rgemma.h but not exported (missing RG_API or definition?):"
    comm -23 "$T/header" "$T/exported" | sed 's/^/  /'
    echo "exported but not declared in rgemma.h (should be static or hidden):"
    comm -13 "$T/header" "$T/exported" | sed 's/^/  /'
    fail "the exported set differs from the header's functions"
fi

v() { sed -n "s/^#define RG_VERSION_$1 \\([0-9][0-9]*\\)\$/\\1/p" include/rgemma.h; }
major=$(v MAJOR)
minor=$(v MINOR)
patch=$(v PATCH)
[ -n "$major" ] && [ -n "$minor" ] && [ -n "$patch" ] || fail "RG_VERSION_MAJOR/MINOR/PATCH not found in rgemma.h"
if [ "$major" = 0 ]; then want=librgemma.so.0.$minor; else want=librgemma.so.$major; fi
soname=$(readelf -d "$SO" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "$want" ] || fail "soname $soname, want $want (from rgemma.h $major.$minor.$patch)"
[ -f "$BUILD/librgemma.so.$major.$minor.$patch" ] || fail "librgemma.so.$major.$minor.$patch missing"
[ "$(readlink "$BUILD/$soname")" = "librgemma.so.$major.$minor.$patch" ] || fail "$BUILD/$soname is not a link to the library"
echo "$(wc -l <"$T/exported") functions exported, as declared; soname $soname"
