#!/bin/sh
# Writes the seed corpora of tests/fuzz/corpus/ from the test data (run from
# the repository root with a built rgemma; the output is committed). Crashers
# found by fuzzing are added beside these seeds by hand, named crash-*.
set -eu
RGEMMA=${RGEMMA:-build/rgemma}
C=tests/fuzz/corpus
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p $C/safetensors $C/st_index $C/config $C/gguf $C/tokenizer_model $C/tokenizer_json $C/state \
    $C/server_request $C/eval_jsonl $C/tokenize $C/train_data
# a very small model: 2 layers of width 16, vocabulary 64 (and 1000, for the small tokenizer)
cat >"$T/tiny.json" <<'JSON'
{"_block_types": ["recurrent", "attention"], "attention_window_size": 4, "conv1d_width": 4, "head_dim": 8,
 "hidden_size": 16, "intermediate_size": 32, "logits_soft_cap": 30.0, "lru_width": 16, "model_type": "recurrent_gemma",
 "num_attention_heads": 2, "num_hidden_layers": 2, "num_key_value_heads": 1, "vocab_size": 64}
JSON
sed 's/"vocab_size": 64/"vocab_size": 1000/' "$T/tiny.json" >"$T/tiny1000.json"
"$RGEMMA" synth --preset "$T/tiny.json" --dtype bf16 --seed 1 --tokenizer /nonexistent-tokenizer -o "$T/m" >/dev/null 2>&1 \
    || "$RGEMMA" synth --preset "$T/tiny.json" --dtype bf16 --seed 1 -o "$T/m" >/dev/null 2>&1
rm -f "$T/m/tokenizer.json" "$T/m/tokenizer_config.json" "$T/m/tokenizer.model"
"$RGEMMA" synth --preset "$T/tiny1000.json" --dtype f32 --seed 1 --tokenizer tests/data/tokenizer/small_bpe.model \
    -o "$T/t" >/dev/null 2>&1
"$RGEMMA" synth --preset "$T/tiny.json" --dtype f32 --seed 2 --max-shard-size 3KB -o "$T/sh" >/dev/null 2>&1 || true
cp "$T/m/model.safetensors" $C/safetensors/tiny_bf16.safetensors
cp tests/data/golden/dev_4layer/config.json $C/config/dev_4layer.json
cp "$T/tiny.json" $C/config/tiny.json
[ -f "$T/sh/model.safetensors.index.json" ] && cp "$T/sh/model.safetensors.index.json" $C/st_index/sharded.json
printf '{"metadata":{"total_size":16},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}}' >$C/st_index/ab.json
cp "$T/m/config.json" "$T/m2.json"
"$RGEMMA" quantize "$T/m" "$T/q8.gguf" --type q8_0 >/dev/null
"$RGEMMA" quantize "$T/m" "$T/q4.gguf" --type q4_0 >/dev/null
"$RGEMMA" quantize "$T/t" "$T/tok.gguf" --type q8_0 >/dev/null
cp "$T/q8.gguf" "$T/q4.gguf" "$T/tok.gguf" $C/gguf/
cp tests/data/tokenizer/small_bpe.model $C/tokenizer_model/
"$RGEMMA" generate -m tests/data/golden/dev_4layer --prompt-ids 2,5,6,7 -n 2 --temp 0 --save-state $C/state/dev4.state \
    >/dev/null 2>&1
printf '{"model":"tiny","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi <start_of_turn>"},{"role":"assistant","content":"Hello"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":8,"temperature":0.7,"top_p":0.9,"top_k":40,"min_p":0.05,"seed":3,"stop":["x","yy"],"stream":true,"stream_options":{"include_usage":true},"parse_special":false}' \
    >$C/server_request/chat.json
printf '{"prompt":"The capital of <end_of_turn>","max_tokens":4,"n_predict":3,"repeat_penalty":1.1,"repeat_last_n":-1,"presence_penalty":0.5,"frequency_penalty":-0.5,"ignore_eos":true,"stop":"."}' \
    >$C/server_request/completion.json
printf '{"prompt":[2,651,6037],"max_completion_tokens":2}' >$C/server_request/ids.json
printf '{"content":"Hello \\u00e9 <start_of_turn>","add_special":true,"with_pieces":true,"parse_special":false,"tokens":[1,2,999]}' \
    >$C/server_request/tokenize.json
# state_blob/: no command writes state blobs (the server's store does); its
# two seeds (dev_4layer at positions 3 and 40, rg_state_blob_write + seal)
# were written once by a throwaway program and are kept as they are.
for f in tests/data/eval/*.jsonl; do cp "$f" $C/eval_jsonl/; done
head -c 3000 tests/data/tokenizer/small_bpe.golden.jsonl >$C/tokenize/golden_head.txt
printf 'Hello <start_of_turn>user\n<end_of_turn>\n\n\t\t<table> caf\303\251 \360\237\231\202 \377\376' >$C/tokenize/special.txt
printf '{"text": "Hello world"}\n\n{"text": "caf\\u00e9 \\n <start_of_turn>"}\n' >$C/train_data/text.jsonl
printf '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "model", "content": "Bye"}]}\n' \
    >$C/train_data/chat.jsonl
# tokenizer.json: small_bpe laid out as the Hugging Face converter writes it
python3 - tests/data/tokenizer/small_bpe.vocab $C/tokenizer_json/small_bpe.json <<'PY'
import json, sys
pieces = [l.rstrip("\n").split("\t")[0] for l in open(sys.argv[1], encoding="utf-8")]
ids = {p: i for i, p in enumerate(pieces)}
merges = []
for p in pieces[262:]:
    for k in range(1, len(p)):
        if p[:k] in ids and p[k:] in ids:
            merges.append([p[:k], p[k:]])
tok = {"version": "1.0",
       "added_tokens": [{"id": i, "content": pieces[i], "special": True} for i in range(4)],
       "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
       "pre_tokenizer": None,
       "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "byte_fallback": True,
                 "vocab": ids, "merges": merges}}
json.dump(tok, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
PY
du -sh $C
