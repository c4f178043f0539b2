# Sourced by CLI tests: small_model DIR writes a small random model whose
# 1000-token vocabulary matches tests/data/tokenizer/small_bpe.model (which
# has <start_of_turn> and <end_of_turn>), with that tokenizer beside it.
small_model() {
    mkdir -p "$1.cfg"
    cat >"$1.cfg/config.json" <<'JSON'
{"_block_types": ["recurrent", "recurrent", "attention"], "attention_window_size": 32, "conv1d_width": 4,
 "head_dim": 16, "hidden_size": 64, "intermediate_size": 256, "logits_soft_cap": 30.0, "lru_width": 64,
 "model_type": "recurrent_gemma", "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 1000}
JSON
    "$RGEMMA" synth --preset "$1.cfg/config.json" --dtype f32 --seed 3 \
        --tokenizer tests/data/tokenizer/small_bpe.model -o "$1" 2>/dev/null
}
