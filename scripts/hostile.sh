#!/bin/sh
# A hostile user's run over the CLI and the server (issue 12):
#
#   sh scripts/hostile.sh [N] [OUT.md]
#
# For each input kind (safetensors, safetensors index, config.json, GGUF,
# tokenizer.model, tokenizer.json, state file, prompt, command-line flags,
# eval task JSONL, training data JSONL, HTTP requests) it writes N bad inputs, always the same for
# the same N and HOSTILE_SEED (random byte flips, truncations, inserted bytes,
# zeroed or maxed length fields, edits of the JSON or binary structure), plus
# a few hand-made ones, feeds each to the command that reads that kind under
# `timeout`, and sorts the outcomes:
#   accepted  exit 0 (a mutation can stay valid)
#   clear     non-zero exit, and stderr ends with the one error line
#             "rgemma: COMMAND: ..." (HTTP: a 4xx with a JSON error, or 503;
#             malformed HTTP may also be refused by closing the connection)
#   unclear   any other failure (HTTP: 5xx, a 4xx without a JSON error)
#   crash     killed by a signal, or a sanitizer report (HTTP: the server died)
#   hang      the timeout fired (HTTP: no answer, or /health stopped answering)
# It prints a markdown table (and writes it to OUT.md), then every unclear,
# crash and hang case with its command and stderr, and exits 1 if there was
# any. RGEMMA (default build/rgemma) is the binary: build-asan/rgemma makes
# every ASan/UBSan report a crash. RGEMMA_SHARED (default ../shared) holds the
# golden models; the first case found there is used (else tests/data/golden).
# HOSTILE_KINDS limits the run to some kinds (space-separated names);
# HOSTILE_VERBOSE=1 lists every case with its outcome.
set -u
export LC_ALL=C # error lines may quote raw bytes of a bad file: grep them as text
N=${1:-20}
OUT=${2:-}
RGEMMA=${RGEMMA:-build/rgemma}
SEED=${HOSTILE_SEED:-1}
TMO=${HOSTILE_TIMEOUT:-20}
KINDS=${HOSTILE_KINDS:-safetensors index config gguf tokenizer.model tokenizer.json state prompt flags eval train http}
: "${RGEMMA_SHARED:=../shared}"
case $RGEMMA in /*) ;; *) RGEMMA=$PWD/$RGEMMA ;; esac
[ -x "$RGEMMA" ] || { echo "hostile.sh: no binary at $RGEMMA (build it first)" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
W=$(mktemp -d /tmp/rgemma-hostile.XXXXXX)
trap 'rm -rf "$W"' EXIT
trap 'exit 1' INT TERM
die() { echo "hostile.sh: $*" >&2; exit 2; }

# --- the valid inputs the mutants start from
CASE=""
for d in "$RGEMMA_SHARED"/testdata/golden/*/ "$ROOT"/tests/data/golden/*/; do
    [ -f "$d/config.json" ] && [ -f "$d/model.safetensors" ] && { CASE=${d%/}; break; }
done
[ -n "$CASE" ] || die "no golden case (config.json + model.safetensors) under $RGEMMA_SHARED/testdata/golden"
B=$W/base
mkdir -p "$B/golden"
cp "$CASE/config.json" "$CASE/model.safetensors" "$B/golden/"
# a model with the small test tokenizer: the golden shapes, vocabulary 1000
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["vocab_size"] = 1000; json.dump(c, open(sys.argv[2], "w"))' \
    "$CASE/config.json" "$B/small.json" || die "cannot write the small config"
"$RGEMMA" synth --preset "$B/small.json" --dtype f32 --seed 3 --tokenizer "$ROOT/tests/data/tokenizer/small_bpe.model" \
    -o "$B/small" >"$W/prep.log" 2>&1 || die "synth small: $(cat "$W/prep.log")"
"$RGEMMA" synth --preset "$CASE/config.json" --dtype f32 --seed 4 --max-shard-size 100KB -o "$B/sharded" \
    >"$W/prep.log" 2>&1 || die "synth sharded: $(cat "$W/prep.log")"
[ -f "$B/sharded/model.safetensors.index.json" ] || die "synth wrote no index"
"$RGEMMA" quantize "$B/small" "$B/small.gguf" --type q8_0 >"$W/prep.log" 2>&1 || die "quantize: $(cat "$W/prep.log")"
"$RGEMMA" quantize "$B/golden" "$B/golden.gguf" --type q8_0 >"$W/prep.log" 2>&1 || die "quantize: $(cat "$W/prep.log")"
"$RGEMMA" generate -m "$B/small" -p "Hello there" -n 2 --temp 0 -t 1 --save-state "$B/small.state" \
    >"$W/prep.log" 2>&1 || die "save state: $(cat "$W/prep.log")"
cp "$ROOT/tests/fuzz/corpus/tokenizer_json/small_bpe.json" "$B/tokenizer.json"
cp "$ROOT/tests/data/eval/dev4_mc.jsonl" "$B/eval.jsonl"
printf 'The quick brown fox jumps over the lazy dog. It was a bright cold day in April.\n' >"$B/text.txt"
printf 'Hello\n' >"$B/hello.txt"

# --- run and classify
: >"$W/results"   # kind TAB class TAB case name TAB detail file
san() { grep -aqE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$1"; }
run_kind() { # run_kind KIND: every line of $W/KIND/manifest.tsv
    k=$1 i=0
    tab=$(printf '\t')
    while IFS= read -r line; do
        i=$((i + 1))
        old_ifs=$IFS
        IFS=$tab
        set -f
        # shellcheck disable=SC2086
        set -- $line
        set +f
        IFS=$old_ifs
        name=$1 in=$2 mode=$3
        shift 3
        for a; do # restore empty arguments
            shift
            [ "$a" = @@EMPTY@@ ] && a=""
            set -- "$@" "$a"
        done
        cmd=$1
        o=$W/$k/out$i e=$W/$k/err$i
        t=$TMO
        [ "$mode" = serve ] && t=4 # a server that starts runs until stopped
        start=$(date +%s)
        timeout -k 5 "$t" "$RGEMMA" "$@" <"$in" >"$o" 2>"$e"
        rc=$?
        took=$(($(date +%s) - start))
        last=$(grep -av '^[[:space:]]*$' "$e" | tail -n 1)
        if san "$e"; then cls=crash
        elif [ "$mode" = serve ] && [ $rc -eq 124 ] && grep -q 'listening on' "$o" "$e"; then cls=accepted
        elif [ $rc -eq 124 ] || { [ $rc -eq 137 ] && [ "$took" -ge "$t" ]; }; then cls=hang
        elif [ $rc -eq 0 ]; then cls=accepted
        elif [ $rc -ge 128 ]; then cls=crash
        elif [ "$(grep -ac '^rgemma: ' "$e")" -eq 1 ] && printf '%s\n' "$last" | grep -aq "^rgemma: $cmd: ."; then cls=clear
        else cls=unclear
        fi
        d=$W/$k/detail$i
        if [ $cls != accepted ] && [ $cls != clear ]; then
            {
                printf 'exit status %s after %s s\n$ %s' "$rc" "$took" "$RGEMMA"
                for a; do printf " '%s'" "$a"; done
                [ "$in" != /dev/null ] && printf ' < %s (%s bytes)' "$in" "$(wc -c <"$in")"
                printf '\n--- stderr (last 25 lines):\n'
                tail -n 25 "$e"
            } >"$d"
        fi
        printf '%s\t%s\t%s\t%s\n' "$k" "$cls" "$name" "$d" >>"$W/results"
        rm -f "$o" "$e"
    done <"$W/$k/manifest.tsv"
}

for k in $KINDS; do
    if [ "$k" = http ]; then
        python3 "$HERE/hostile.py" http "$RGEMMA" "$SEED" "$N" "$B" "$W/http" || die "the HTTP client failed"
        awk -F '\t' '{printf "http\t%s\t%s\t%s\n", $2, $1, $3}' "$W/http/results.tsv" >>"$W/results"
    else
        python3 "$HERE/hostile.py" make "$k" "$SEED" "$N" "$B" "$W/$k" || die "cannot write the $k cases"
        run_kind "$k"
    fi
done

# --- the report
label() {
    case $1 in
    safetensors) echo "safetensors file (header, dtype, shape, offsets)" ;;
    index) echo "safetensors index (model.safetensors.index.json)" ;;
    config) echo "config.json" ;;
    gguf) echo "GGUF file (header, metadata, tensor infos, tokenizer)" ;;
    tokenizer.model) echo "tokenizer.model" ;;
    tokenizer.json) echo "tokenizer.json" ;;
    state) echo "state file (--load-state)" ;;
    prompt) echo "prompt (-f FILE, chat stdin)" ;;
    flags) echo "command-line flags (every command)" ;;
    eval) echo "eval task JSONL" ;;
    train) echo "training data JSONL (rgemma train)" ;;
    http) echo "HTTP requests to serve" ;;
    *) echo "$1" ;;
    esac
}
{
    echo "| input kind | tried | accepted | clear error | unclear error | crash | hang |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for k in $KINDS; do
        awk -F '\t' -v k="$k" -v l="$(label "$k")" '$1 == k { n++; c[$2]++ }
            END { printf "| %s | %d | %d | %d | %d | %d | %d |\n", l, n, c["accepted"], c["clear"], c["unclear"], c["crash"], c["hang"] }' \
            "$W/results"
    done
    awk -F '\t' '{ n++; c[$2]++ } END { printf "| **all** | %d | %d | %d | %d | %d | %d |\n", n, c["accepted"], c["clear"], c["unclear"], c["crash"], c["hang"] }' \
        "$W/results"
} >"$W/table"
[ -n "${HOSTILE_VERBOSE:-}" ] && cut -f 1-3 "$W/results"
cat "$W/table"
[ -n "$OUT" ] && cp "$W/table" "$OUT"
bad=$(awk -F '\t' '$2 == "unclear" || $2 == "crash" || $2 == "hang"' "$W/results" | wc -l)
if [ "$bad" -gt 0 ]; then
    echo
    echo "## $bad unclear errors, crashes and hangs"
    awk -F '\t' '$2 == "unclear" || $2 == "crash" || $2 == "hang" { print $1 "\t" $2 "\t" $3 "\t" $4 }' "$W/results" |
        while IFS="$(printf '\t')" read -r k cls name d; do
            echo
            echo "### $k: $cls: $name"
            cat "$d"
        done
    exit 1
fi
exit 0
