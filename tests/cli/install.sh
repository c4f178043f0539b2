#!/bin/sh
# make install into a temporary prefix, then a program outside the tree
# (tests/install/embed.c) is built with nothing but pkg-config's flags, linked
# against the installed librgemma.so, and reproduces a golden case's greedy
# tokens. Works on any build folder (RGEMMA_BUILD), sanitized ones included:
# their rgemma.pc carries the sanitizer flags the library needs.
set -eu
BUILD=${RGEMMA_BUILD:-build}
fail() { echo "FAIL: $*"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# a make of its own: not the variables or job server of a `make test` above
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s install BUILD="$BUILD" PREFIX="$T/usr" >"$T/log" 2>&1 \
    || { cat "$T/log"; fail "make install"; }
for f in include/rgemma.h lib/librgemma.a lib/librgemma.so lib/pkgconfig/rgemma.pc bin/rgemma; do
    [ -e "$T/usr/$f" ] || fail "$f not installed"
done
grep -qx "prefix=$T/usr" "$T/usr/lib/pkgconfig/rgemma.pc" || fail "rgemma.pc's prefix is not $T/usr"

# DESTDIR stages the same tree elsewhere, with the prefix still PREFIX
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s install BUILD="$BUILD" PREFIX=/opt/rg DESTDIR="$T/stage" \
    >"$T/log" 2>&1 || { cat "$T/log"; fail "make install DESTDIR=..."; }
grep -qx "prefix=/opt/rg" "$T/stage/opt/rg/lib/pkgconfig/rgemma.pc" || fail "DESTDIR install: prefix is not /opt/rg"
[ -L "$T/stage/opt/rg/lib/librgemma.so" ] || fail "DESTDIR install: librgemma.so link missing"

flags=$(PKG_CONFIG_PATH="$T/usr/lib/pkgconfig" pkg-config --cflags --libs rgemma) || fail "pkg-config rgemma"
cc -o "$T/embed" tests/install/embed.c $flags || fail "embed.c does not build with: $flags"
readelf -d "$T/embed" | grep -q 'NEEDED.*\[librgemma\.so' || fail "embed is not linked to librgemma.so"
LD_LIBRARY_PATH="$T/usr/lib" ldd "$T/embed" | grep -q "librgemma.so.* => $T/usr/lib/" \
    || fail "embed does not load the installed librgemma.so"
"$T/usr/bin/rgemma" --version >/dev/null || fail "the installed rgemma does not run"

case_dir=tests/data/golden/dev_4layer
[ -d "$RGEMMA_SHARED/testdata/golden/dev_4layer" ] && case_dir=$RGEMMA_SHARED/testdata/golden/dev_4layer
g() { python3 -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['greedy']['$1'])))" "$case_dir/golden.json"; }
prompt=$(g prompt)
want=$(g generated)
n=$(echo "$want" | tr ',' '\n' | wc -l)
LD_LIBRARY_PATH="$T/usr/lib" "$T/embed" "$case_dir" "$prompt" "$n" >"$T/out" || { cat "$T/out"; fail "embed failed"; }
cat "$T/out"
got=$(sed -n 2p "$T/out")
[ "$got" = "$want" ] || fail "$case_dir: got $got, want $want"

# the static library, with what pkg-config --static lists for it (Libs.private)
static=$(PKG_CONFIG_PATH="$T/usr/lib/pkgconfig" pkg-config --static --libs rgemma | sed 's/-L[^ ]*//; s/-lrgemma//')
cc -o "$T/embed-static" tests/install/embed.c -I"$T/usr/include" "$T/usr/lib/librgemma.a" $static \
    || fail "embed.c does not link with librgemma.a and: $static"
readelf -d "$T/embed-static" | grep -q 'NEEDED.*librgemma' && fail "embed-static needs librgemma.so"
"$T/embed-static" "$case_dir" "$prompt" "$n" >"$T/out-static" || fail "embed-static failed"
cmp -s "$T/out" "$T/out-static" || fail "embed-static: $(sed -n 2p "$T/out-static"), want $want"
echo "embed (pkg-config: $flags) and embed-static (librgemma.a$static) reproduce $case_dir's $n greedy tokens"
