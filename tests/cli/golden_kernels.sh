#!/bin/sh
# The golden check under every kernel path: RGEMMA_KERNEL=scalar, avx2,
# avx512 and amx on x86-64, neon and neon-dotprod on arm64 (a path this CPU cannot
# run, or this build does not have, is skipped with a line saying so). All
# compute with float32 activations for the float32/bf16 golden models, so
# each keeps golden.json's tolerance (atol 5e-4).
BUILD=${RGEMMA_BUILD:-build}
dirs="tests/data/golden"
if [ -n "$RGEMMA_SHARED" ] && [ -d "$RGEMMA_SHARED/testdata/golden" ]; then
    dirs="$dirs $RGEMMA_SHARED/testdata/golden"
fi
status=0
for path in scalar avx2 avx512 amx neon neon-dotprod; do
    for d in $dirs; do
        out=$(RGEMMA_KERNEL=$path "$BUILD/check-golden" "$d" 2>&1)
        rc=$?
        if printf '%s\n' "$out" | grep -q "cannot run the \"$path\" kernels"; then
            echo "skip: this CPU cannot run the $path kernels"
            break
        fi
        if printf '%s\n' "$out" | grep -q "unknown kernel path \"$path\""; then
            echo "skip: this build has no $path kernels (another architecture's)"
            break
        fi
        last=$(printf '%s\n' "$out" | tail -n 1)
        echo "$d: $last"
        case "$last" in
        "check-golden ($path kernels):"*" 0 failed") [ "$rc" -eq 0 ] || status=1 ;;
        *) printf '%s\n' "$out"; status=1 ;;
        esac
    done
done
exit $status
