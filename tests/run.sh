#!/bin/sh
# Runs every test program (cmocka, tests/unit) and every CLI test script
# (tests/cli/*.sh) against one build folder and prints one closing line:
# "N passed, N failed". Exits non-zero if anything failed.
BUILD=${1:-build}
passed=0
failed=0
failed_names=""
export RGEMMA="$BUILD/rgemma"
export RGEMMA_BUILD="$BUILD"
: "${RGEMMA_SHARED:=../shared}"
export RGEMMA_SHARED

sum_field() { # $1 = PASSED|FAILED, reads cmocka output on stdin
    sed -n "s/^\[  $1  \] \([0-9][0-9]*\) test.*/\1/p" | awk '{s += $1} END {print s + 0}'
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    out=$("$t" 2>&1)
    rc=$?
    p=$(printf '%s\n' "$out" | sum_field PASSED)
    f=$(printf '%s\n' "$out" | sum_field FAILED)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed or aborted
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failed_names="$failed_names $(basename "$t")"
        printf '%s\n' "$out"
    else
        printf '%s: %s passed\n' "$(basename "$t")" "$p"
        printf '%s\n' "$out" | sed -n 's/^note: /  note: /p' # what a passing test could not check here
    fi
done

for s in tests/cli/*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$s" .sh)
    if out=$(sh "$s" 2>&1); then
        passed=$((passed + 1))
        printf 'cli/%s: passed\n' "$name"
        printf '%s\n' "$out" | sed -n 's/^note: /  note: /p' # what a passing script could not check here
    else
        failed=$((failed + 1))
        failed_names="$failed_names cli/$name"
        printf '%s\n' "$out"
        printf 'cli/%s: FAILED\n' "$name"
    fi
done

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
