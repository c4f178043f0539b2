#!/bin/sh
# Which kinds of matrix cost the most KL in Q4_K (the measurement behind the
# q4_k_m mix, README "Quantized models"): for each kind, a file with that
# kind alone in TYPE (default q4_k) and every other tensor float32, its KL
# and top-1 agreement against the float checkpoint (`quantize --eval`), and
# the kind's share of the matrix bytes.
#   sh scripts/kquant-sensitivity.sh MODEL_DIR [TYPE] [N_TOKENS]
set -eu
RGEMMA=${RGEMMA:-build/rgemma}
M=$1 TYPE=${2:-q4_k} N=${3:-1024}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
printf '%-13s %10s %10s %8s\n' kind "mean KL" "max KL" "top-1 %"
for kind in embed_tokens linear_x linear_y linear_out q_proj k_proj v_proj o_proj gate_proj up_proj down_proj; do
    "$RGEMMA" quantize "$M" "$T/m.gguf" --type f32 --tensor-type "$kind=$TYPE" >"$T/log"
    grep -q "$(echo "$TYPE" | tr a-z A-Z)" "$T/log" || { echo "$kind: no tensor took $TYPE"; cat "$T/log"; exit 1; }
    "$RGEMMA" quantize --eval "$M" "$T/m.gguf" -n "$N" --ctx 256 --json >"$T/eval"
    python3 -c "import json,sys; d=json.load(open('$T/eval')); print('%-13s %10.3g %10.3g %8.2f' % ('$kind', d['mean_kl'], d['max_kl'], 100*d['top1_agreement']))"
done
