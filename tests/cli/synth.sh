#!/bin/sh
# rgemma synth: writes a sharded HF folder that loads, says the weights are
# random, and refuses bad options with a one-line error.
set -e
T=$(mktemp -d /tmp/rgemma-cli-synth.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$RGEMMA" synth --preset tiny --dtype bf16 --seed 5 --max-shard-size 20MB --tokenizer /nonexistent -o "$T/x" 2>"$T/err" \
    && fail "a missing --tokenizer path must be an error"
grep -q "^rgemma: synth: tokenizer /nonexistent" "$T/err" || fail "tokenizer error: $(cat "$T/err")"

"$RGEMMA" synth --preset tiny --dtype bf16 --seed 5 --max-shard-size 20MB -o "$T/tiny" 2>"$T/err" || fail "synth: $(cat "$T/err")"
grep -q "RANDOM weights" "$T/err" || fail "the output must say the weights are random"
grep -q "RANDOM" "$T/tiny/README.md" || fail "README.md in the folder must say the weights are random"
[ -f "$T/tiny/config.json" ] && [ -f "$T/tiny/model.safetensors.index.json" ] || fail "config/index missing"
n=$(ls "$T/tiny"/model-*-of-*.safetensors | wc -l)
[ "$n" -ge 2 ] || fail "expected several shards, got $n"
for key in _block_types architectures attention_bias attention_dropout attention_window_size bos_token_id \
    conv1d_width embeddings_scale_by_sqrt_dim eos_token_id final_w_init_variance_scale head_dim hidden_activation \
    hidden_size intermediate_size logits_soft_cap lru_width model_type num_attention_heads num_hidden_layers \
    num_key_value_heads pad_token_id partial_rotary_factor rms_norm_eps rope_theta torch_dtype \
    transformers_version use_cache vocab_size w_init_variance_scale; do
    grep -q "\"$key\"" "$T/tiny/config.json" || fail "config.json lacks $key"
done
grep -q '"vocab_size":[[:space:]]*256000' "$T/tiny/config.json" || fail "tiny must keep the 256000 vocabulary"

# the same seed gives the same bytes
"$RGEMMA" synth --preset tiny --seed 5 --max-shard-size 20MB -o "$T/again" 2>/dev/null
cmp -s "$T/tiny/model-00002-of-00002.safetensors" "$T/again/model-00002-of-00002.safetensors" \
    || fail "same seed, different bytes"

# a tokenizer folder is copied in
mkdir -p "$T/tok"
printf 'not a real model' >"$T/tok/tokenizer.model"
"$RGEMMA" synth --preset "$T/tiny/config.json" --dtype f32 --tokenizer "$T/tok" -o "$T/fromcfg" 2>"$T/err" \
    || fail "synth from a config.json: $(cat "$T/err")"
cmp -s "$T/tok/tokenizer.model" "$T/fromcfg/tokenizer.model" || fail "tokenizer not copied"
grep -q '"torch_dtype":[[:space:]]*"float32"' "$T/fromcfg/config.json" || fail "torch_dtype must follow --dtype"

# bad input: one line on stderr, non-zero exit
for args in "--preset 3b -o $T/y" "--preset tiny --dtype q4 -o $T/y" "--preset tiny" "--preset tiny -o $T/y --seed -1" \
    "--preset tiny -o $T/y --max-shard-size lots" "--preset tiny -o $T/y --bogus" "--preset $T/none.json -o $T/y"; do
    # shellcheck disable=SC2086
    if "$RGEMMA" synth $args 2>"$T/err" >/dev/null; then fail "accepted: synth $args"; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "synth $args: expected one error line, got: $(cat "$T/err")"
    grep -q "^rgemma: " "$T/err" || fail "synth $args: error must start with 'rgemma: '"
done
echo "synth: ok"
