#!/bin/sh
# Runs every libFuzzer harness (build-fuzz/fuzz_*, from `make fuzz`) for
# SECONDS each (default 12) on its seed corpus in tests/fuzz/corpus/NAME
# (crashers found before are kept there as regression inputs). New inputs go
# to a temporary folder, not into the repository. Fails on any crash, leak,
# timeout (10 s for one input) or out-of-memory (2 GB), and prints each
# harness's executions and coverage.
SECONDS_EACH=${1:-12}
BUILD=${FUZZ_BUILD:-build-fuzz}
cd "$(dirname "$0")/../.." || exit 1
WORK=$(mktemp -d /tmp/rgemma-fuzz-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
failed=""
n=0
for bin in "$BUILD"/fuzz_*; do
    [ -x "$bin" ] || continue
    case "$bin" in *.d | *.o) continue ;; esac
    name=$(basename "$bin" | sed 's/^fuzz_//')
    mkdir -p "$WORK/$name" "tests/fuzz/corpus/$name"
    n=$((n + 1))
    if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$WORK/$name-" -print_final_stats=1 "$WORK/$name" "tests/fuzz/corpus/$name" \
        >"$WORK/$name.log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$name.log")
        cov=$(grep -o 'cov: [0-9]*' "$WORK/$name.log" | tail -n 1)
        echo "fuzz/$name: passed ($execs runs, $cov)"
    else
        echo "fuzz/$name: FAILED"
        grep -E 'ERROR|SUMMARY|==[0-9]+==|Test unit written' "$WORK/$name.log" | head -n 20
        for a in "$WORK/$name"-*; do
            [ -f "$a" ] && echo "  input (base64): $(head -c 2048 "$a" | base64 -w 0)"
        done
        failed="$failed $name"
    fi
done
[ "$n" -gt 0 ] || { echo "no harnesses in $BUILD (run make fuzz)"; exit 1; }
[ -z "$failed" ] || { echo "fuzz failed:$failed"; exit 1; }
exit 0
