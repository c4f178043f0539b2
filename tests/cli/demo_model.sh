#!/bin/sh
# The demo model: its recipe, short (scripts/train-demo.sh with DEMO_QUICK=1:
# the demo shape trained from scratch on the Brown Corpus for 200 steps of
# 4 x 128 tokens) must bring the held-out perplexity well below a unigram
# model's (< 0.6x) and far below random weights'; and the committed model
# (models/brown-demo) loads and writes text. Under ASan (make asan) only the
# committed model runs: the recipe's learning is a numeric property that the
# plain build checks, its code (train, perplexity, tokenizer) is run under
# ASan by train.sh and eval_perplexity.sh, and the recipe took 14 minutes there.
set -eu
RGEMMA=${RGEMMA:-build/rgemma}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
if ldd "$RGEMMA" 2>/dev/null | grep -q libasan; then
    echo "note: sanitizer build: the demo recipe is checked by the plain build only"
else
    DEMO_QUICK=1 DEMO_STEPS=200 DEMO_THREADS=2 RGEMMA=$RGEMMA sh scripts/train-demo.sh "$tmp/demo" >"$tmp/log" 2>&1 || {
        tail -20 "$tmp/log" >&2
        fail "scripts/train-demo.sh failed"
    }
    python3 - "$tmp/demo/report.json" 0.6 <<'EOF' || fail "the demo recipe did not learn enough"
import json, sys
r = json.load(open(sys.argv[1]))
limit = float(sys.argv[2])
ppl, uni, rnd = r["heldout_ppl"], r["unigram_ppl"], r["random_weights_ppl"]
print(f"note: demo recipe, {r['steps']} steps: held-out ppl {ppl:.1f}, unigram {uni:.1f}, random weights {rnd:.0f}")
if not ppl < limit * uni:
    sys.exit(f"FAIL: held-out perplexity {ppl:.1f} is not below {limit} x the unigram model's {uni:.1f}")
if not ppl * 10 < rnd:
    sys.exit(f"FAIL: held-out perplexity {ppl:.1f} is not far below random weights' {rnd:.1f}")
EOF
fi

# the committed model: English words from a prompt
[ -f models/brown-demo/model.safetensors ] || fail "models/brown-demo/model.safetensors is missing"
text=$("$RGEMMA" generate -m models/brown-demo -p "The jury said" -n 24 --temp 0 2>"$tmp/err") || {
    cat "$tmp/err" >&2
    fail "generate on models/brown-demo failed"
}
case "$text" in "The jury said"*) ;; *) fail "generate did not start with the prompt: $text" ;; esac
words=$(printf '%s' "$text" | wc -w)
[ "$words" -ge 10 ] || fail "models/brown-demo wrote only $words words: $text"
echo "note: models/brown-demo: $text"
