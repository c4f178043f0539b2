#!/bin/sh
# make check-grad: the loss and every parameter's gradient equal the official
# reference's (grad.safetensors, with grad.json's tolerances) on every
# gradient case: the project's copies in tests/data/golden and, when the
# shared folder is there, its cases (which may hold shapes not seen here).
BUILD=${RGEMMA_BUILD:-build}
fail() { echo "FAIL: $*"; exit 1; }
dirs="tests/data/golden"
if [ -d "$RGEMMA_SHARED/testdata/golden" ]; then
    dirs="$dirs $RGEMMA_SHARED/testdata/golden"
else
    echo "note: $RGEMMA_SHARED/testdata/golden not found; checking the project's gradient cases only"
fi
total=0
for d in $dirs; do
    out=$("$BUILD/check-grad" "$d" 2>&1)
    rc=$?
    last=$(printf '%s\n' "$out" | tail -n 1)
    echo "$d: $last"
    case "$last" in
    "check-grad: "*" 0 failed") [ "$rc" -eq 0 ] || { printf '%s\n' "$out"; fail "check-grad exited $rc"; } ;;
    *) printf '%s\n' "$out"; fail "check-grad $d" ;;
    esac
    n=$(printf '%s\n' "$last" | sed -n 's/^check-grad: \([0-9]*\) case.*/\1/p')
    total=$((total + n))
done
[ "$total" -ge 3 ] || fail "only $total gradient cases found"
# a folder without cases is an error, not a pass
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
"$BUILD/check-grad" "$empty" >/dev/null 2>&1 && fail "check-grad passed a folder with no cases"
echo "gradients within tolerance on $total cases"
