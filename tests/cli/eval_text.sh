#!/bin/sh
# rgemma eval / perplexity with text, through a tokenizer: a random-weight
# model (rgemma synth, vocabulary 1000) with the small SentencePiece model of
# tests/data/tokenizer. Text items score the same as the token ids the
# tokenizer gives for them (context after BOS, each choice on its own), few-shot
# prompts and stop strings work, and the text perplexity equals the ids one.
set -e
export OMP_NUM_THREADS=1 # tiny models: more threads only add overhead
T=$(mktemp -d /tmp/rgemma-cli-evaltext.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir "$T/tok"
cp tests/data/tokenizer/small_bpe.model "$T/tok/tokenizer.model"
sed 's/"vocab_size": 512/"vocab_size": 1000/' tests/data/golden/dev_4layer/config.json >"$T/config.json"
"$RGEMMA" synth --preset "$T/config.json" --dtype f32 --tokenizer "$T/tok" -o "$T/m" 2>"$T/err" || fail "synth: $(cat "$T/err")"
M="$T/m"
ids() { "$RGEMMA" tokenize --tokenizer "$T/tok" "$@" | tr ' ' ','; }

cat >"$T/text.jsonl" <<'JSON'
{"context": "Question: Which license is this?\nAnswer:", "choices": [" The GNU General Public License", " MIT"], "label": 0}
{"contexts": ["The program is free software because the", "The program is free software because a"], "continuation": " license says so.", "label": 1}
JSON
c1=$(ids --bos -- "Question: Which license is this?
Answer:")
a1=$(ids -- " The GNU General Public License")
b1=$(ids -- " MIT")
c2a=$(ids --bos -- "The program is free software because the")
c2b=$(ids --bos -- "The program is free software because a")
k2=$(ids -- " license says so.")
printf '{"context_ids": [%s], "choices_ids": [[%s], [%s]], "label": 0}\n' "$c1" "$a1" "$b1" >"$T/ids.jsonl"
printf '{"contexts_ids": [[%s], [%s]], "continuation_ids": [%s], "label": 1}\n' "$c2a" "$c2b" "$k2" >>"$T/ids.jsonl"

"$RGEMMA" eval -m $M --task "$T/text.jsonl" --items "$T/ti" >/dev/null 2>"$T/err" || fail "text eval: $(cat "$T/err")"
"$RGEMMA" eval -m $M --task "$T/ids.jsonl" --items "$T/ii" >/dev/null 2>"$T/err" || fail "ids eval: $(cat "$T/err")"
python3 - "$T/ti" "$T/ii" <<'PY' || fail "text and ids scores differ"
import json, sys
t = [json.loads(l) for l in open(sys.argv[1])]
i = [json.loads(l) for l in open(sys.argv[2])]
for a, b in zip(t, i):
    assert a["n_tokens"] == b["n_tokens"], (a, b)
    for x, y in zip(a["ll"], b["ll"]):
        assert abs(x - y) < 1e-4, (x, y)
PY

# few-shot text prompts: the shots' answers are shown, the prefix is processed once
printf '%s\n' '{"context": "Question: Is this free software?\nAnswer:", "choices": [" yes", " no"], "label": 0}' \
    '{"context": "Question: Can you share it?\nAnswer:", "choices": [" no", " yes"], "label": 1}' >"$T/shots.jsonl"
"$RGEMMA" eval -m $M --task "$T/text.jsonl" --shots "$T/shots.jsonl" -k 2 --json "$T/fs.json" >/dev/null 2>"$T/err" \
    || fail "few-shot: $(cat "$T/err")"
"$RGEMMA" eval -m $M --task "$T/text.jsonl" --shots "$T/shots.jsonl" -k 2 --no-reuse --json "$T/fs0.json" >/dev/null \
    2>"$T/err" || fail "few-shot without reuse: $(cat "$T/err")"
python3 - "$T/fs.json" "$T/fs0.json" <<'PY' || fail "few-shot reuse"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["num_shots"] == 2 and a["metrics"] == b["metrics"], (a, b)
assert a["tokens"] < b["tokens"], (a["tokens"], b["tokens"])
PY

# generation with a stop string: the output never holds it; maj@k agrees with its votes
printf '%s\n' '{"prompt": "The license", "answers": ["x"], "stop": ["e"]}' \
    '{"prompt": "Copyright", "answers": ["y"], "max_tokens": 5}' >"$T/gen.jsonl"
"$RGEMMA" eval -m $M --task "$T/gen.jsonl" --samples 5 --temp 1.5 --items "$T/gi" >"$T/gmd" 2>"$T/err" \
    || fail "generation: $(cat "$T/err")"
grep -q "| gen | maj@5 |" "$T/gmd" || fail "maj@5 row: $(cat "$T/gmd")"
python3 - "$T/gi" <<'PY' || fail "generation outputs: $(cat "$T/gi")"
import json, string, sys
items = [json.loads(l) for l in open(sys.argv[1])]
assert all("e" not in o for o in items[0]["outputs"]), items[0]
for it in items:
    # SQuAD normalisation, as the vote uses
    ex = [" ".join(w for w in "".join(c for c in x.lower() if c not in string.punctuation).split()
                   if w not in ("a", "an", "the")) for x in it["extracted"]]
    counts = [ex.count(x) for x in ex]
    assert it["vote"] == counts.index(max(counts)), it
PY

# text perplexity equals the ids perplexity of the same tokens (BOS first)
head -c 1500 tests/data/tokenizer/small_bpe.vocab >"$T/doc.txt"
"$RGEMMA" perplexity -m $M -f "$T/doc.txt" -c 64 >"$T/pt" 2>"$T/err" || fail "text perplexity: $(cat "$T/err")"
"$RGEMMA" tokenize --tokenizer "$T/tok" --bos <"$T/doc.txt" >"$T/doc.ids"
"$RGEMMA" perplexity -m $M -f "$T/doc.ids" --ids -c 64 >"$T/pi" 2>"$T/err" || fail "ids perplexity: $(cat "$T/err")"
a=$(grep "^Final estimate" "$T/pt")
b=$(grep "^Final estimate" "$T/pi")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "text \"$a\" vs ids \"$b\""
exit 0
