#!/bin/sh
# rgemma train: the loss falls on a repetitive text (from scratch and
# fine-tuning), the checkpoint loads in generate and perplexity and is better
# than its start, a run split by --stop-after / Ctrl-C and --resume gives the
# same bytes as one run, chat data trains, and bad input is one line with
# nothing written.
set -e
. tests/cli/lib/small_model.sh
T=$(mktemp -d /tmp/rgemma-cli-train.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
TOK=tests/data/tokenizer/small_bpe.model

small_model "$T/base"
i=0
while [ $i -lt 60 ]; do printf 'The quick brown fox jumps over the lazy dog. '; i=$((i + 1)); done >"$T/rep.txt"
RUN="--data $T/rep.txt --ctx 32 --batch 2 --lr 3e-3 --eval-every 4 -t 1"

# from scratch: progress lines, CSV, the held-out loss falls
# shellcheck disable=SC2086
"$RGEMMA" train $RUN --config "$T/base/config.json" --tokenizer $TOK --steps 8 -o "$T/scratch" --csv "$T/scratch.csv" \
    2>"$T/err" || fail "from scratch: $(cat "$T/err")"
grep -q '^step 8/8  loss [0-9.]*  lr [0-9.e+-]*  |g| [0-9.]*  [0-9]* tok/s  ETA 0s$' "$T/err" || fail "progress line: $(cat "$T/err")"
grep -q '^eval at step 8: loss [0-9.]*  ppl [0-9.]*$' "$T/err" || fail "eval line: $(cat "$T/err")"
[ "$(head -1 "$T/scratch.csv")" = "step,train_loss,eval_loss,lr,tokens,seconds" ] || fail "csv header"
[ "$(wc -l <"$T/scratch.csv")" -eq 10 ] || fail "csv rows: $(cat "$T/scratch.csv")"
awk -F, 'NR == 2 { a = $3 } END { if (!($3 < a - 4)) exit 1 }' "$T/scratch.csv" \
    || fail "held-out loss did not fall: $(cat "$T/scratch.csv")"
for f in config.json model.safetensors tokenizer.model optimizer.bin; do
    [ -f "$T/scratch/$f" ] || fail "checkpoint lacks $f"
done
[ ! -e "$T/scratch.tmp" ] || fail "scratch.tmp left behind"

# fine-tuning: the checkpoint generates, and its perplexity beats the base model's
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --steps 6 -o "$T/tuned" 2>"$T/err" || fail "fine-tune: $(cat "$T/err")"
"$RGEMMA" generate -m "$T/tuned" -p "The quick" -n 8 --temp 0 >"$T/out" 2>"$T/err" || fail "generate: $(cat "$T/err")"
[ -s "$T/out" ] || fail "generate printed nothing"
ppl() { "$RGEMMA" perplexity -m "$1" -f "$T/rep.txt" -c 32 --json 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])"; }
base=$(ppl "$T/base")
tuned=$(ppl "$T/tuned")
python3 -c "import sys; sys.exit(not ($tuned < $base / 10))" || fail "perplexity $base -> $tuned"

# resume: 6 steps in one go = 3 (--stop-after) + 3 (--resume), bf16 export
# (the f32 weights then live in optimizer.bin), on different thread counts
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --steps 6 --save-dtype bf16 -o "$T/whole" 2>/dev/null || fail "whole run"
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --steps 6 --save-dtype bf16 -o "$T/split" --stop-after 3 -t 2 --csv "$T/split.csv" \
    2>"$T/err" || fail "first half: $(cat "$T/err")"
grep -q "stopped at step 3 of 6" "$T/err" || fail "first half: $(cat "$T/err")"
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --steps 6 --save-dtype bf16 -o "$T/split" --resume --csv "$T/split.csv" \
    2>"$T/err" || fail "resume: $(cat "$T/err")"
grep -q "resumed at step 3 of 6" "$T/err" || fail "resume: $(cat "$T/err")"
cmp -s "$T/whole/model.safetensors" "$T/split/model.safetensors" || fail "resumed run differs from the whole run"
grep -q '"torch_dtype":[[:space:]]*"bfloat16"' "$T/split/config.json" || fail "bf16 config"
[ "$(cut -d, -f1 "$T/split.csv" | tr '\n' ' ')" = "step 0 1 2 3 4 5 6 " ] || fail "csv after resume: $(cat "$T/split.csv")"
"$RGEMMA" perplexity -m "$T/split" -f "$T/rep.txt" -c 32 >/dev/null 2>&1 || fail "bf16 checkpoint does not load"

# LoRA: the folder holds the adapters only (small); --lora-merge adds the
# merged checkpoint, and generate --lora on the base gives its greedy tokens;
# --checkpoint-activations and split + resume give the same adapters as one run
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --lora 4 --steps 4 -o "$T/lora" --lora-merge 2>"$T/err" || fail "LoRA: $(cat "$T/err")"
grep -q "LoRA rank 4, alpha 4 on 19 matrices" "$T/err" || fail "LoRA: $(cat "$T/err")"
for f in adapter_model.safetensors adapter_config.json model.safetensors config.json; do
    [ -f "$T/lora/$f" ] || fail "LoRA with --lora-merge lacks $f"
done
grep -q '"lora_alpha":[[:space:]]*4' "$T/lora/adapter_config.json" || fail "adapter_config.json: $(cat "$T/lora/adapter_config.json")"
[ "$(wc -c <"$T/lora/adapter_model.safetensors")" -lt 65536 ] || fail "the adapter file is not small"
"$RGEMMA" generate -m "$T/lora" -p "The quick" -n 12 --temp 0 >"$T/merged.out" 2>"$T/err" || fail "merged: $(cat "$T/err")"
"$RGEMMA" generate -m "$T/base" --lora "$T/lora" -p "The quick" -n 12 --temp 0 >"$T/applied.out" 2>"$T/err" \
    || fail "generate --lora: $(cat "$T/err")"
[ -s "$T/merged.out" ] && cmp -s "$T/merged.out" "$T/applied.out" \
    || fail "generate --lora differs from the merged checkpoint: $(cat "$T/merged.out") / $(cat "$T/applied.out")"
"$RGEMMA" perplexity -m "$T/base" --lora "$T/lora/adapter_model.safetensors" -f "$T/rep.txt" -c 32 >/dev/null 2>&1 \
    || fail "perplexity --lora"
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --lora 4 --steps 4 -o "$T/lora2" --stop-after 2 --checkpoint-activations 2>/dev/null \
    || fail "LoRA first half"
[ ! -e "$T/lora2/model.safetensors" ] || fail "LoRA without --lora-merge wrote the weights"
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --lora 4 --steps 4 -o "$T/lora2" --resume 2>/dev/null || fail "LoRA resume"
cmp -s "$T/lora/adapter_model.safetensors" "$T/lora2/adapter_model.safetensors" \
    || fail "LoRA: resumed run (activations recomputed) differs from the whole run"
# an adapter of another shape: one line naming the file and tensor
sed 's/"intermediate_size":[[:space:]]*[0-9]*/"intermediate_size": 96/' "$T/base/config.json" >"$T/other.json"
"$RGEMMA" synth --preset "$T/other.json" -o "$T/other-model" --tokenizer $TOK >/dev/null 2>&1 || fail "synth other"
if "$RGEMMA" generate -m "$T/other-model" --lora "$T/lora" -p "The" -n 2 >/dev/null 2>"$T/err"; then fail "another shape's adapter accepted"; fi
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^rgemma: generate: $T/lora/adapter_model.safetensors: tensor \"model.layers.0.mlp_block.*lora_A.weight\".*do not fit" "$T/err" \
    || fail "another shape's adapter: $(cat "$T/err")"
# a bf16 base: its adapted matrices stay bf16 in training; merged (bf16) and
# applied at load (merged in memory in bf16) give the same tokens
"$RGEMMA" synth --preset "$T/base/config.json" --dtype bf16 --seed 3 --tokenizer $TOK -o "$T/base16" >/dev/null 2>&1 \
    || fail "synth bf16"
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base16" --lora 4 --steps 4 -o "$T/lora16" --lora-merge --save-dtype bf16 2>"$T/err" \
    || fail "LoRA on bf16: $(cat "$T/err")"
"$RGEMMA" generate -m "$T/lora16" -p "The quick" -n 12 --temp 0 >"$T/merged16.out" 2>/dev/null || fail "bf16 merged"
"$RGEMMA" generate -m "$T/base16" --lora "$T/lora16" -p "The quick" -n 12 --temp 0 >"$T/applied16.out" 2>/dev/null \
    || fail "bf16 --lora"
cmp -s "$T/merged16.out" "$T/applied16.out" || fail "bf16: generate --lora differs from the merged checkpoint"
cmp -s "$T/lora16/model.safetensors" "$T/base16/model.safetensors" && fail "bf16: the merged checkpoint is the base"
# quantised weights: refused, with what to do instead
"$RGEMMA" quantize "$T/base" "$T/q8.gguf" --type q8_0 >/dev/null 2>&1 || fail "quantize"
if "$RGEMMA" generate -m "$T/q8.gguf" --lora "$T/lora" -p "The" -n 2 >/dev/null 2>"$T/err"; then fail "LoRA on Q8_0 accepted"; fi
[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^rgemma: generate: .*is Q8_0: LoRA applies to float weights only" "$T/err" \
    || fail "LoRA on Q8_0: $(cat "$T/err")"
# a finished run is merged afterwards: the same command with --resume --lora-merge
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --lora 4 --steps 4 -o "$T/lora2" --resume --lora-merge 2>/dev/null || fail "merge after the run"
cmp -s "$T/lora/model.safetensors" "$T/lora2/model.safetensors" || fail "merged after the run differs"

# Ctrl-C saves and stops (130); --resume continues from there. The log is
# emptied first: the background run opens it after this shell goes on, and
# the last run's step lines must not pass for this one's.
: >"$T/err"
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --steps 100000 -o "$T/int" 2>"$T/err" &
pid=$!
n=0
until grep -q "^step " "$T/err" || [ $n -ge 300 ]; do sleep 0.1; n=$((n + 1)); done
kill -INT $pid
rc=0
wait $pid || rc=$?
[ "$rc" -eq 130 ] || fail "Ctrl-C: exit $rc, want 130 ($(cat "$T/err"))"
grep -q "^saved $T/int (step [0-9]*)" "$T/err" || fail "Ctrl-C: no checkpoint: $(cat "$T/err")"
at=$(sed -n 's/^saved .* (step \([0-9]*\))$/\1/p' "$T/err")
# shellcheck disable=SC2086
"$RGEMMA" train $RUN -m "$T/base" --steps 100000 -o "$T/int" --resume --stop-after 1 2>"$T/err" || fail "resume after Ctrl-C"
grep -q "^saved $T/int (step $((at + 1)))" "$T/err" || fail "resume after Ctrl-C: $(cat "$T/err")"

# chat data: trains on the model's turns
{
    i=0
    while [ $i -lt 20 ]; do
        echo '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]}'
        i=$((i + 1))
    done
} >"$T/chat.jsonl"
"$RGEMMA" train --data "$T/chat.jsonl" -m "$T/base" --ctx 32 --batch 2 --steps 2 --eval-frac 0 -t 1 -o "$T/chat" 2>"$T/err" \
    || fail "chat: $(cat "$T/err")"
grep -q "data: 20 documents" "$T/err" || fail "chat: $(cat "$T/err")"

# bad input: one line on stderr, non-zero exit, no output folder
one_line_error() { # $1 = expected text; the rest = arguments of rgemma train
    w=$1
    shift
    rm -rf "$T/none"
    if timeout 60 "$RGEMMA" train "$@" >/dev/null 2>"$T/err"; then fail "accepted: $*"; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "$*: expected one line, got: $(cat "$T/err")"
    grep -q "^rgemma: train: .*$w" "$T/err" || fail "$*: expected '$w', got: $(cat "$T/err")"
    ! grep -q "^rgemma: train: train: " "$T/err" || fail "$*: the command named twice: $(cat "$T/err")"
    [ ! -e "$T/none" ] || fail "$*: wrote $T/none"
}
printf '{"text": "fine"}\n{"text": "broken\n' >"$T/bad.jsonl"
echo '{"messages": [{"role": "user", "content": "no reply"}]}' >"$T/noreply.jsonl"
sed 's/"vocab_size":[[:space:]]*1000/"vocab_size": 500/' "$T/base/config.json" >"$T/small_vocab.json"
mkdir -p "$T/other" && echo mine >"$T/other/notes.txt"
one_line_error "bad.jsonl:2: not a JSON object" --data "$T/bad.jsonl" -m "$T/base" -o "$T/none"
one_line_error "fewer than one sequence of ctx 4096" --data "$T/rep.txt" -m "$T/base" --ctx 4096 -o "$T/none"
one_line_error "no targets" --data "$T/noreply.jsonl" -m "$T/base" --ctx 8 --eval-frac 0 -o "$T/none"
one_line_error "vocab_size is 500" --data "$T/rep.txt" --config "$T/small_vocab.json" --tokenizer $TOK -o "$T/none"
one_line_error "needs a tokenizer" --data "$T/rep.txt" --config "$T/base/config.json" -o "$T/none"
one_line_error "no checkpoint to resume" --data "$T/rep.txt" -m "$T/base" --resume -o "$T/none"
one_line_error "holds other files" --data "$T/rep.txt" -m "$T/base" --ctx 32 -o "$T/other"
one_line_error "unknown preset" --data "$T/rep.txt" --preset 3b --tokenizer $TOK -o "$T/none"
one_line_error "needs --data" -m "$T/base" -o "$T/none"
one_line_error "--lr must be" --data "$T/rep.txt" -m "$T/base" --lr fast -o "$T/none"
one_line_error "LoRA adapts a checkpoint" --data "$T/rep.txt" --config "$T/base/config.json" --tokenizer $TOK --lora 4 -o "$T/none"
one_line_error "--lora-merge needs --lora" --data "$T/rep.txt" -m "$T/base" --lora-merge -o "$T/none"
one_line_error "--save-dtype must be" --data "$T/rep.txt" -m "$T/base" --save-dtype q4 -o "$T/none"
cp "$T/scratch/model.safetensors" "$T/before"
# shellcheck disable=SC2086
one_line_error "another run" $RUN --config "$T/base/config.json" --tokenizer $TOK --steps 8 --seed 9 --resume -o "$T/scratch"
cmp -s "$T/before" "$T/scratch/model.safetensors" || fail "a refused resume changed the checkpoint"
size=$(wc -c <"$T/scratch/optimizer.bin")
printf '\377' | dd of="$T/scratch/optimizer.bin" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
# shellcheck disable=SC2086
one_line_error "truncated or corrupt" $RUN --config "$T/base/config.json" --tokenizer $TOK --steps 8 --resume -o "$T/scratch"
head -c $((size - 9)) "$T/scratch/optimizer.bin" >"$T/cut" && mv "$T/cut" "$T/scratch/optimizer.bin"
# shellcheck disable=SC2086
one_line_error "truncated or corrupt" $RUN --config "$T/base/config.json" --tokenizer $TOK --steps 8 --resume -o "$T/scratch"
"$RGEMMA" train --help | grep -q -- "--eval-frac" || fail "--help"
echo "train: ok"
