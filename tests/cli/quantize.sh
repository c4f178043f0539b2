#!/bin/sh
# rgemma quantize: writes a GGUF file that rgemma loads, --eval prints the
# quality figures, bad input is one "rgemma: ..." line and a non-zero exit.
set -eu
RGEMMA=${RGEMMA:-build/rgemma}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
M=tests/data/golden/dev_4layer

"$RGEMMA" quantize "$M" "$T/m.gguf" --type q8_0 >"$T/out" 2>"$T/err"
grep -q "wrote $T/m.gguf" "$T/out"
grep -q "Q8_0" "$T/out"
grep -q "RG-LRU gate" "$T/out"
[ ! -e "$T/m.gguf.tmp" ]

"$RGEMMA" quantize --eval "$M" "$T/m.gguf" -n 256 --ctx 128 --json >"$T/eval"
grep -q '"positions": 256' "$T/eval"
grep -q '"mean_kl": ' "$T/eval"

# the K-quants' rows are super-blocks of 256: this model's 64-wide rows fall
# back to the 32-block types, and the mix says so
"$RGEMMA" quantize "$M" "$T/k.gguf" --type q4_k_m >"$T/out"
grep -q "Q4_0 .*(rows are not a multiple of 256)" "$T/out"
grep -q "Q8_0 .*(rows are not a multiple of 256)" "$T/out"
# --tensor-type: a kind in its own type (repeatable, the last match wins)
"$RGEMMA" quantize "$M" "$T/t.gguf" --type f32 --tensor-type down_proj=q4_0 --tensor-type layers.1.mlp_block.down_proj=q8_0 >"$T/out"
grep -q "Q4_0 .* 3 tensors  (--tensor-type)" "$T/out"
grep -q "Q8_0 .* 1 tensors  (--tensor-type)" "$T/out"
for bad in "down_proj" "=q8_0" "down_proj=q5_k"; do
    if "$RGEMMA" quantize "$M" "$T/x.gguf" --tensor-type "$bad" 2>"$T/err"; then exit 1; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^rgemma: quantize: .*tensor type \"$bad\"" "$T/err" ||
        { echo "FAIL: --tensor-type $bad: $(cat "$T/err")"; exit 1; }
done

# refusals: unknown type, missing input, a file that is not GGUF
if "$RGEMMA" quantize "$M" "$T/x.gguf" --type q5_k 2>"$T/err"; then exit 1; fi
grep -q '^rgemma: quantize: unknown weight type "q5_k"' "$T/err"
[ ! -e "$T/x.gguf" ]
if "$RGEMMA" quantize "$T/nope" "$T/x.gguf" 2>"$T/err"; then exit 1; fi
grep -q '^rgemma: .*nope' "$T/err"
printf 'GGUF\003\000\000\000\001' >"$T/bad.gguf"
if "$RGEMMA" quantize --eval "$M" "$T/bad.gguf" 2>"$T/err"; then exit 1; fi
grep -q '^rgemma: .*bad.gguf: truncated' "$T/err"
[ "$(wc -l <"$T/err")" -eq 1 ]
if "$RGEMMA" quantize "$M" 2>/dev/null; then exit 1; fi
# numbers are checked (they were atoi'd: "x" became 0): one line naming the flag
for bad in "-n x|-n" "-n 0|-n" "--ctx 12x|--ctx" "-t 0|--threads" "--seed -1|--seed"; do
    args=${bad%|*}
    if "$RGEMMA" quantize --eval "$M" "$M" $args 2>"$T/err"; then exit 1; fi
    [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^rgemma: quantize: ${bad#*|} must be an integer" "$T/err" ||
        { echo "FAIL: quantize $args: $(cat "$T/err")"; exit 1; }
done
if "$RGEMMA" quantize "$M" "$T/x.gguf" --bogus 2>"$T/err"; then exit 1; fi
grep -q "^rgemma: quantize: unknown or incomplete option '--bogus'" "$T/err"

# the tokenizer travels inside the file: a GGUF alone in its folder generates
# the same text as the checkpoint folder (f32: identical logits)
. tests/cli/lib/small_model.sh
small_model "$T/sm"
mkdir "$T/only"
"$RGEMMA" quantize "$T/sm" "$T/only/sm.gguf" --type f32 >/dev/null
a=$("$RGEMMA" tokenize --tokenizer "$T/sm" "Hello, world! <start_of_turn>user")
b=$("$RGEMMA" tokenize --tokenizer "$T/only/sm.gguf" "Hello, world! <start_of_turn>user")
[ -n "$a" ] && [ "$a" = "$b" ]
a=$("$RGEMMA" generate -m "$T/sm" -p "The license" -n 8 --temp 0 -t 1 --no-display-prompt 2>/dev/null)
b=$("$RGEMMA" generate -m "$T/only/sm.gguf" -p "The license" -n 8 --temp 0 -t 1 --no-display-prompt 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ]
exit 0
