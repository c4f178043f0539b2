#!/bin/sh
# Throughput when sampling many sequences at once, in the shape of the
# RecurrentGemma report's throughput figure: B sequences, each with a P-token
# prompt, then generation to L = 512, 1024, ..., 8192 tokens; aggregate
# tokens/s (all B sequences together) per length, as a table and a gnuplot
# chart. Runs `rgemma bench --batch` and reads its JSON.
#
#   sh scripts/throughput-sweep.sh [options] MODEL [MODEL ...]
#
#   -b LIST   sequences decoded at once (default 1,4,16)
#   -P N      prompt tokens of each sequence (default 2048)
#   -L LIST   generation lengths (default 512,1024,2048,4096,8192)
#   -s N      sampled mode (the default): N decode steps measured at each
#             length, i.e. at position P+L (default 32)
#   -x        exact mode: every sequence generates all L tokens from the
#             prompt, one bench row per length (B x (sum of L) tokens: hours
#             for the 2B shape on 2 cores)
#   -t N      threads (default: all cores)
#   -o DIR    where sweep.json, sweep.md, sweep.dat and sweep.svg go
#             (default throughput-sweep)
#   RGEMMA    the rgemma binary (default ./build/rgemma)
#
# Sampled mode processes each prompt once (one state, prefilled to P+L and
# copied to the B sequences: a state is fixed-size, so a copy stands for a
# sequence that generated up to there) and times N steps of B tokens. The
# state does not grow with the length, so the step time at P+L is the
# generation's rate all along; exact mode measures the whole generation.
# The chart needs gnuplot: apt-get install gnuplot-nox.
set -e
RGEMMA=${RGEMMA:-./build/rgemma}
BATCH=1,4,16 PROMPT=2048 LENGTHS=512,1024,2048,4096,8192 STEPS=32 EXACT=0 THREADS="" OUT=throughput-sweep
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while getopts b:P:L:s:xt:o:h opt; do
    case $opt in
    b) BATCH=$OPTARG ;;
    P) PROMPT=$OPTARG ;;
    L) LENGTHS=$OPTARG ;;
    s) STEPS=$OPTARG ;;
    x) EXACT=1 ;;
    t) THREADS="-t $OPTARG" ;;
    o) OUT=$OPTARG ;;
    h) usage; exit 0 ;;
    *) echo "throughput-sweep: unknown option (try -h)" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "throughput-sweep: no model given (try -h)" >&2; exit 2; }
for v in "$PROMPT" "$STEPS"; do
    case $v in '' | *[!0-9]*) echo "throughput-sweep: -P and -s take a number (got \"$v\")" >&2; exit 2 ;; esac
done
case $LENGTHS in '' | *[!0-9,]*) echo "throughput-sweep: -L takes a list of numbers (got \"$LENGTHS\")" >&2; exit 2 ;; esac
MODELS=""
for m in "$@"; do MODELS="$MODELS -m $m"; done

if [ "$EXACT" = 1 ]; then
    GEN=$LENGTHS DEPTHS=$PROMPT
else
    GEN=$STEPS DEPTHS=$(echo "$LENGTHS" | tr ',' '\n' | awk -v p="$PROMPT" 'NF { printf "%s%d", s, p + $1; s = "," }')
fi
mkdir -p "$OUT"
echo "throughput-sweep: $RGEMMA bench$MODELS -p 0 -n $GEN -d $DEPTHS -b $BATCH -r 1 $THREADS -o json" >&2
# shellcheck disable=SC2086
"$RGEMMA" bench $MODELS -p 0 -n "$GEN" -d "$DEPTHS" -b "$BATCH" -r 1 $THREADS -o json >"$OUT/sweep.json"

python3 - "$OUT" "$PROMPT" "$EXACT" "$STEPS" <<'PY'
import json, os, sys
out, prompt, exact, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
d = json.load(open(os.path.join(out, "sweep.json")))
mc = d["machine"]
rates = {}  # (model, batch) -> {length: aggregate t/s}
for r in d["results"]:
    if r["n_gen"] == 0:
        continue
    length = r["n_gen"] if exact else r["depth"] - prompt
    name = os.path.basename(r["model"].rstrip("/"))
    rates.setdefault((name, r["batch"]), {})[length] = r["tokens_per_s_mean"]
keys = sorted(rates, key=lambda k: (k[0], k[1]))
lengths = sorted({l for v in rates.values() for l in v})
la0, la1 = mc["load_average_start"], mc["load_average_end"]
how = ("exact: each sequence generates all L tokens" if exact
       else "sampled: %d steps timed at position %d+L" % (steps, prompt))
note = "%s, %d threads, %s kernels; load average %.2f at the start, %.2f at the end" % (
    mc["cpu"], mc["threads"], mc["kernels"], la0[0], la1[0])
with open(os.path.join(out, "sweep.md"), "w") as f:
    f.write("Aggregate tokens/s of B sequences, each with a %d-token prompt, by generation length L (%s).\n" % (prompt, how))
    f.write(note + "\n\n")
    f.write("| L | " + " | ".join("%s \u00d7%d" % k for k in keys) + " |\n")
    f.write("|---:|" + "---:|" * len(keys) + "\n")
    for l in lengths:
        f.write("| %d | " % l + " | ".join("%.2f" % rates[k][l] if l in rates[k] else "" for k in keys) + " |\n")
with open(os.path.join(out, "sweep.dat"), "w") as f:
    f.write("# L " + " ".join("%s_x%d" % k for k in keys) + "\n")
    for l in lengths:
        f.write("%d " % l + " ".join("%.4f" % rates[k][l] if l in rates[k] else "NaN" for k in keys) + "\n")
title = "Aggregate throughput, %d-token prompt (%s)" % (prompt, "exact" if exact else "sampled")
plots = ", ".join("'%s' using 1:%d with linespoints lw 2 pt 7 ps 0.8 title '%s, B = %d'" % (
    os.path.join(out, "sweep.dat"), i + 2, k[0].replace("_", "\\_"), k[1]) for i, k in enumerate(keys))
with open(os.path.join(out, "sweep.gp"), "w") as f:
    f.write("""set terminal svg size 720,440 dynamic font 'Helvetica,12' background rgb 'white'
set output '%s'
set title "%s\\n{/*0.8 %s}"
set xlabel 'generation length L (tokens)'
set ylabel 'aggregate tokens/s'
set logscale x 2
set xrange [%g:%g]
set xtics (%s)
set yrange [0:*]
set grid
set key outside right top box
plot %s
""" % (os.path.join(out, "sweep.svg"), title, note.replace("_", "\\_"), lengths[0] / 1.3, lengths[-1] * 1.3, ", ".join('"%d" %d' % (l, l) for l in lengths), plots))
PY
cat "$OUT/sweep.md"
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot "$OUT/sweep.gp" && echo "chart: $OUT/sweep.svg" >&2
else
    echo "throughput-sweep: no gnuplot, no chart (apt-get install gnuplot-nox; then gnuplot $OUT/sweep.gp)" >&2
fi
