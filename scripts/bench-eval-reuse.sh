#!/bin/sh
# The speed-up of scoring multiple choice from a state snapshot (and of keeping
# the few-shot prefix as a state) over re-processing every choice from scratch.
#
# usage: scripts/bench-eval-reuse.sh [MODEL] [ITEMS]
#
# MODEL defaults to a random-weight model written by `rgemma synth` (hidden 512,
# 6 layers, vocabulary 16000; under /tmp). Two benchmark files of random token
# ids are made, shaped like the model card's two kinds of log-likelihood task:
#   hellaswag-like: 0-shot, a 64-token context, 4 choices of 24 tokens;
#   mmlu-like:      5-shot (40 tokens per shot, shots per group), a 48-token
#                   question, 4 one-token choices.
# Each is scored with state reuse (the default) and with --no-reuse; the scores
# must agree, and the table gives both times and the speed-up.
set -e
RGEMMA=${RGEMMA:-build/rgemma}
ITEMS=${2:-4}
W=$(mktemp -d /tmp/rgemma-bench-eval.XXXXXX)
trap 'rm -rf "$W"' EXIT
MODEL=$1
if [ -z "$MODEL" ]; then
    cat >"$W/config.json" <<'EOF'
{"architectures": ["RecurrentGemmaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
 "attention_window_size": 2048, "_block_types": ["recurrent", "recurrent", "attention"], "bos_token_id": 2,
 "conv1d_width": 4, "embeddings_scale_by_sqrt_dim": true, "eos_token_id": 1, "final_w_init_variance_scale": 0.33,
 "head_dim": 64, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 512, "intermediate_size": 3072,
 "logits_soft_cap": 30.0, "lru_width": 512, "model_type": "recurrent_gemma", "num_attention_heads": 8,
 "num_hidden_layers": 6, "num_key_value_heads": 1, "pad_token_id": 0, "partial_rotary_factor": 0.5,
 "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "torch_dtype": "float32", "transformers_version": "4.40.0.dev0",
 "use_cache": true, "vocab_size": 16000, "w_init_variance_scale": 0.01}
EOF
    mkdir "$W/tok" && : >"$W/tok/tokenizer.model" # token ids only: no real tokenizer needed
    "$RGEMMA" synth --preset "$W/config.json" --dtype f32 --tokenizer "$W/tok" -o "$W/model" >/dev/null
    MODEL="$W/model"
fi
V=$(sed -n 's/.*"vocab_size":[[:space:]]*\([0-9]*\).*/\1/p' "$MODEL/config.json" | head -1)

# seq(n): n random ids in [3, V)
awk -v items="$ITEMS" -v V="$V" 'function seq(n,   s, i) { s = ""; for (i = 0; i < n; i++) s = s (i ? "," : "") int(3 + rand() * (V - 3)); return s }
BEGIN {
    srand(7);
    for (i = 0; i < items; i++) {
        printf "{\"context_ids\":[2,%s],\"choices_ids\":[[%s],[%s],[%s],[%s]],\"label\":%d}\n", seq(63), seq(24), seq(24), seq(24), seq(24), i % 4 > "'"$W"'/hellaswag.jsonl";
        printf "{\"group\":\"g%d\",\"context_ids\":[%s],\"choices_ids\":[[%s],[%s],[%s],[%s]],\"label\":%d}\n", (2 * i >= items), seq(48), seq(1), seq(1), seq(1), seq(1), i % 4 > "'"$W"'/mmlu.jsonl";
    }
    for (g = 0; g < 2; g++) for (i = 0; i < 5; i++)
        printf "{\"group\":\"g%d\",\"context_ids\":[%s%s],\"choices_ids\":[[%s],[%s]],\"label\":0}\n", g, i ? "" : "2,", seq(i ? 39 : 38), seq(1), seq(1) > "'"$W"'/shots.jsonl";
}'

run() { # name, extra args...
    name=$1
    shift
    "$RGEMMA" eval -m "$MODEL" --no-progress --json "$W/$name.json" "$@" >"$W/$name.md" 2>"$W/$name.err" || {
        cat "$W/$name.err"
        exit 1
    }
}
field() { sed -n "s/.*\"$2\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" "$W/$1.json"; }

echo "model: $MODEL; $ITEMS items per benchmark; threads: ${OMP_NUM_THREADS:-all}"
echo "| benchmark | reuse: wall s | CPU s | tokens | no-reuse: wall s | CPU s | tokens | speed-up (CPU) |"
echo "|---|---|---|---|---|---|---|---|"
for b in hellaswag mmlu; do
    extra=""
    [ $b = mmlu ] && extra="--shots $W/shots.jsonl -k 5"
    run $b-reuse --task "$W/$b.jsonl" $extra
    run $b-noreuse --task "$W/$b.jsonl" $extra --no-reuse
    grep '^| ' "$W/$b-reuse.md" | sed 1,2d >"$W/a"
    grep '^| ' "$W/$b-noreuse.md" | sed 1,2d >"$W/b"
    cmp -s "$W/a" "$W/b" || { echo "scores differ between reuse and no-reuse"; exit 1; }
    awk -v b=$b -v wa="$(field $b-reuse seconds)" -v ca="$(field $b-reuse cpu_seconds)" -v ta="$(field $b-reuse tokens)" \
        -v wn="$(field $b-noreuse seconds)" -v cn="$(field $b-noreuse cpu_seconds)" -v tn="$(field $b-noreuse tokens)" \
        'BEGIN { printf "| %s | %.2f | %.2f | %d | %.2f | %.2f | %d | %.2fx |\n", b, wa, ca, ta, wn, cn, tn, cn / ca }'
done
