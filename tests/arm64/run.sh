#!/bin/sh
# make test-arm64: the arm64 build (make cross-arm64) run under qemu-user on
# two emulated CPUs, so that both NEON sets and the run-time choice between
# them are exercised:
#   max         has the dot-product instructions: test_kernels checks the
#               scalar, neon and neon-dotprod sets against its references;
#               check-golden runs on the set picked at run time (it must be
#               neon-dotprod) and on scalar;
#   cortex-a53  Armv8.0, without them: neon-dotprod must not be offered (qemu
#               stops a program at the first instruction its CPU lacks, so
#               this also shows that the plain set uses none); test_kernels
#               checks scalar and neon, check-golden runs on the set picked
#               (neon).
# On both, test_gemm checks each set's float32 GEMM (the trainer's) against
# its reference; on max, test_kv_window runs the float16 and Q8_0 attention
# windows (scores and weighted sums of those types) on every set.
# check-golden covers tests/data/golden and
# $RGEMMA_SHARED/testdata/golden.
# Prints a line per step, "N passed, N failed" last; non-zero if any failed.
BUILD=${1:-build-arm64}
QEMU=${QEMU_AARCH64:-$(command -v qemu-aarch64-static || command -v qemu-aarch64)}
if [ -z "$QEMU" ]; then
    echo "no qemu-aarch64-static or qemu-aarch64 (make deps installs qemu-user-static)" >&2
    exit 1
fi
: "${RGEMMA_SHARED:=../shared}"
export RGEMMA_SHARED
# Two threads, so that the threaded matmul split runs too; waiting threads
# sleep instead of spinning, which under emulation cost about 3 times the
# work itself (check-golden 34 s -> 12 s).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

dirs="tests/data/golden"
if [ -d "$RGEMMA_SHARED/testdata/golden" ]; then
    dirs="$dirs $RGEMMA_SHARED/testdata/golden"
fi
passed=0
failed=0
start=$(date +%s)

# $1 step name, $2 0 if it passed, $3 its output (shown if it failed)
result() {
    if [ "$2" -eq 0 ]; then
        passed=$((passed + 1))
        echo "$1: passed"
    else
        failed=$((failed + 1))
        printf '%s\n' "$3"
        echo "$1: FAILED"
    fi
}

# CPU | the sets test_kernels must find | check-golden runs, RGEMMA_KERNEL=set the summary must name
for spec in "max|scalar neon neon-dotprod|auto=neon-dotprod scalar=scalar" "cortex-a53|scalar neon|auto=neon"; do
    cpu=${spec%%|*}
    rest=${spec#*|}
    sets=${rest%%|*}
    runs=${rest#*|}
    t0=$(date +%s)
    out=$("$QEMU" -cpu "$cpu" "$BUILD/tests/test_kernels" 2>&1)
    rc=$?
    n=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p')
    printf '%s\n' "$out" | grep -qx "kernel sets on this CPU: $sets" || rc=1
    result "$cpu: test_kernels ($sets: ${n:-0} tests)" "$rc" "$out"
    # the training GEMM of every set on this CPU against its reference
    out=$("$QEMU" -cpu "$cpu" "$BUILD/tests/test_gemm" 2>&1)
    rc=$?
    n=$(printf '%s
' "$out" | sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p')
    result "$cpu: test_gemm (${n:-0} tests)" "$rc" "$out"
    if [ "$cpu" = max ]; then
        out=$("$QEMU" -cpu "$cpu" "$BUILD/tests/test_kv_window" 2>&1)
        rc=$?
        n=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p')
        printf '%s\n' "$out" | grep -q 'head dim 32 \[neon-dotprod\], q8_0 window' || rc=1
        result "$cpu: test_kv_window (${n:-0} tests)" "$rc" "$out"
    fi
    for run in $runs; do
        path=${run%%=*}
        want=${run#*=}
        for d in $dirs; do
            out=$(RGEMMA_KERNEL=$path "$QEMU" -cpu "$cpu" "$BUILD/check-golden" "$d" 2>&1)
            rc=$?
            last=$(printf '%s\n' "$out" | tail -n 1)
            case "$last" in
            "check-golden ($want kernels): "*" 0 failed") ;;
            *) rc=1 ;;
            esac
            result "$cpu: RGEMMA_KERNEL=$path check-golden $d ($last)" "$rc" "$out"
        done
    done
    echo "$cpu: $(($(date +%s) - t0)) s"
done

echo "arm64 under $(basename "$QEMU"): $(($(date +%s) - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
