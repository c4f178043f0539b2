#!/bin/sh
# rgemma pull and -hf against tests/hub/fake_hub.py, a stand-in for the
# Hugging Face hub on 127.0.0.1 (the hub's URL layout, a 302 to a "CDN" on
# another port for LFS files, Range requests): the huggingface_hub cache
# layout (blobs named by digest, relative snapshot links, refs/main), a
# generation from the pulled model equal to one from the folder it was served
# from, no second download of a cached file, an interrupted transfer resumed,
# a corrupted file refused, a gated model's 401 and the token (not sent on to
# the CDN), --offline from the cache once the server is gone, bad names.
set -eu
T=$(mktemp -d /tmp/rgemma-cli-pull.XXXXXX)
HUB_PID=""
cleanup() {
    if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    [ -f "$T/hub.log" ] && tail -n 15 "$T/hub.log"
    exit 1
}
RUN() { timeout 60 "$RGEMMA" "$@"; }
unset HF_HUB_CACHE HF_TOKEN HF_TOKEN_PATH HF_HUB_OFFLINE XDG_CACHE_HOME 2>/dev/null || true
export HF_HUB_ETAG_TIMEOUT=10 HF_HUB_DOWNLOAD_TIMEOUT=10

# ---- the models the fake hub serves: a sharded one, a single-file one, one without config.json
cat >"$T/cfg.json" <<'JSON'
{"_block_types": ["recurrent", "recurrent", "attention"], "attention_window_size": 32, "conv1d_width": 4,
 "head_dim": 16, "hidden_size": 64, "intermediate_size": 256, "logits_soft_cap": 30.0, "lru_width": 64,
 "model_type": "recurrent_gemma", "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 1000}
JSON
RUN synth --preset "$T/cfg.json" --dtype f32 --seed 3 --max-shard-size 300KB \
    --tokenizer tests/data/tokenizer/small_bpe.model -o "$T/model" 2>"$T/err" || fail "synth: $(cat "$T/err")"
[ -f "$T/model/model.safetensors.index.json" ] || fail "synth wrote no index (want several shards)"
printf '{"bos_token_id": 2, "eos_token_id": 1}\n' >"$T/model/generation_config.json"
RUN synth --preset "$T/cfg.json" --dtype bf16 --seed 4 --tokenizer tests/data/tokenizer/small_bpe.model \
    -o "$T/single" 2>/dev/null || fail "synth single"
[ -f "$T/single/model.safetensors" ] || fail "synth wrote no model.safetensors"
mkdir -p "$T/noconfig"
cp tests/data/tokenizer/small_bpe.model "$T/noconfig/tokenizer.model"
SHARD2=model-00002-of-$(ls "$T/model" | sed -n 's/^model-00001-of-\([0-9]*\)\.safetensors$/\1/p')
[ -f "$T/model/$SHARD2.safetensors" ] || fail "no second shard"
SHARD2=$SHARD2.safetensors

start_hub() { # options for fake_hub.py
    rm -f "$T/port"
    python3 tests/hub/fake_hub.py --model test-org/tiny-rg="$T/model" --model test-org/single="$T/single" \
        --model test-org/noconfig="$T/noconfig" --port-file "$T/port" --log "$T/hub.log" "$@" \
        >"$T/hub.out" 2>&1 &
    HUB_PID=$!
    i=0
    while [ ! -s "$T/port" ]; do
        i=$((i + 1))
        [ "$i" -le 150 ] || fail "the fake hub did not start: $(cat "$T/hub.out")"
        kill -0 "$HUB_PID" 2>/dev/null || fail "the fake hub exited: $(cat "$T/hub.out")"
        sleep 0.1
    done
    export HF_ENDPOINT="http://127.0.0.1:$(cat "$T/port")"
}
stop_hub() {
    kill "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
    HUB_PID=""
}
sha256() { sha256sum "$1" | cut -c1-64; }
gitsha1() { python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest())' "$1"; }

# ---- a pull into an empty cache: the layout huggingface_hub uses
start_hub
export HF_HOME="$T/hf"
snap=$(RUN pull test-org/tiny-rg 2>"$T/err") || fail "pull: $(cat "$T/err")"
C="$T/hf/hub/models--test-org--tiny-rg"
[ -f "$C/refs/main" ] || fail "no refs/main"
commit=$(cat "$C/refs/main")
echo "$commit" | grep -Eq '^[0-9a-f]{40}$' || fail "refs/main holds \"$commit\", not a commit hash"
[ "$snap" = "$C/snapshots/$commit" ] || fail "pull printed $snap, want $C/snapshots/$commit"
n=0
for f in "$T/model"/*; do
    name=$(basename "$f")
    [ "$name" = README.md ] && continue # not a file rgemma pulls
    [ -L "$snap/$name" ] || fail "$name: not a link in the snapshot"
    link=$(readlink "$snap/$name")
    case "$name" in
    *.safetensors | *.model) want=$(sha256 "$f") ;; # LFS: the sha256
    *) want=$(gitsha1 "$f") ;;                      # the git blob sha1
    esac
    [ "$link" = "../../blobs/$want" ] || fail "$name links to $link, want ../../blobs/$want"
    [ -f "$C/blobs/$want" ] || fail "$name: blob missing"
    cmp -s "$snap/$name" "$f" || fail "$name: pulled bytes differ"
    n=$((n + 1))
done
[ "$n" -ge 6 ] || fail "only $n files checked"
[ ! -e "$snap/README.md" ] || fail "README.md pulled"
[ ! -e "$snap/tokenizer.json" ] || fail "a tokenizer.json appeared from nowhere"
ls "$C/blobs" | grep -q incomplete && fail "an .incomplete file was left behind"
grep -q "^pulled $SHARD2: " "$T/err" || fail "no progress line for $SHARD2 (stderr not a tty): $(cat "$T/err")"
grep -q '^LEAK' "$T/hub.log" && fail "a token reached the CDN"

# -hf on generate equals -m on the folder the hub served
RUN generate -m "$T/model" -p hi -n 2 --temp 0 >"$T/want" 2>"$T/err" || fail "generate -m: $(cat "$T/err")"
RUN generate -hf test-org/tiny-rg -p hi -n 2 --temp 0 >"$T/got" 2>"$T/err" || fail "generate -hf: $(cat "$T/err")"
cmp -s "$T/want" "$T/got" || fail "generate -hf: $(cat "$T/got"), want $(cat "$T/want")"
RUN tokenize --hf=test-org/tiny-rg hi >"$T/got" 2>"$T/err" || fail "tokenize --hf=: $(cat "$T/err")"
RUN tokenize -m "$T/model" hi >"$T/want" 2>/dev/null
cmp -s "$T/want" "$T/got" || fail "tokenize --hf=: $(cat "$T/got"), want $(cat "$T/want")"

# a cached file is not downloaded again: the second pull only asks (HEAD)
gets=$(grep -c '^GET' "$T/hub.log")
RUN pull -q test-org/tiny-rg >/dev/null 2>"$T/err" || fail "second pull: $(cat "$T/err")"
[ "$(grep -c '^GET' "$T/hub.log")" -eq "$gets" ] || fail "the second pull downloaded again"
[ ! -s "$T/err" ] || fail "pull -q printed: $(cat "$T/err")"

# a single-file repository (model.safetensors, no index) and a revision by commit
s=$(RUN pull test-org/single 2>"$T/err") || fail "pull single: $(cat "$T/err")"
[ -L "$s/model.safetensors" ] && [ ! -e "$s/model.safetensors.index.json" ] || fail "single: layout"
cmp -s "$s/model.safetensors" "$T/single/model.safetensors" || fail "single: bytes differ"
s2=$(RUN pull "test-org/tiny-rg@$commit" 2>"$T/err") || fail "pull @commit: $(cat "$T/err")"
[ "$s2" = "$snap" ] || fail "pull @commit gave $s2"
RUN pull test-org/tiny-rg@nosuchbranch >/dev/null 2>"$T/err" && fail "an unknown revision was accepted"
grep -q "^rgemma: pull: .*revision nosuchbranch .*not found" "$T/err" || fail "unknown revision: $(cat "$T/err")"

# a required file missing from the repository: named, with its URL
RUN pull test-org/noconfig >/dev/null 2>"$T/err" && fail "a repository without config.json was accepted"
grep -q "^rgemma: pull: config.json: not in the repository (http://127.0.0.1:[0-9]*/test-org/noconfig/resolve/main/config.json, HTTP 404)" "$T/err" \
    || fail "missing config.json: $(cat "$T/err")"

# bad names never reach the server or the disk
for bad in "../etc" "a/b/c" "org/na me" "org/..x" "org/x@../../y" ""; do
    RUN pull "$bad" >/dev/null 2>"$T/err" && fail "pull accepted \"$bad\""
    [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^rgemma: pull: " "$T/err" || fail "pull \"$bad\": $(cat "$T/err")"
done
RUN generate -p hi -hf >/dev/null 2>"$T/err" && fail "-hf without a value was accepted"
grep -q "^rgemma: generate: -hf needs a model" "$T/err" || fail "-hf without a value: $(cat "$T/err")"
stop_hub

# ---- an interrupted transfer is resumed by the next pull (Range: bytes=N-)
: >"$T/hub.log"
start_hub --truncate-after 100000
export HF_HOME="$T/hf-resume"
RUN pull test-org/tiny-rg >/dev/null 2>"$T/err" && fail "a truncated transfer was accepted"
grep -q "run the pull again to resume" "$T/err" || fail "interrupted: $(cat "$T/err")"
grep -q "^TRUNCATE" "$T/hub.log" || fail "the fake hub did not cut a transfer"
R="$T/hf-resume/hub/models--test-org--tiny-rg"
part=$(ls "$R"/blobs/*.incomplete 2>/dev/null | head -n 1)
[ -n "$part" ] || fail "no .incomplete file kept"
[ "$(wc -c <"$part")" -eq 100000 ] || fail "the partial file holds $(wc -c <"$part") bytes, want 100000"
[ ! -e "$R/refs/main" ] || fail "refs/main written for an incomplete pull"
cut_file=$(sed -n 's/^TRUNCATE \([^ ]*\) .*/\1/p' "$T/hub.log")
[ ! -e "$R/snapshots/$commit/$cut_file" ] || fail "$cut_file linked before it was complete"
snap=$(RUN pull test-org/tiny-rg 2>"$T/err") || fail "resumed pull: $(cat "$T/err")"
grep -q "^GET /cdn/.* range=bytes=100000- " "$T/hub.log" || fail "the second pull did not resume with a Range request"
grep -q "^pulled $cut_file: .*resumed at 100000 bytes" "$T/err" || fail "no resumed line: $(cat "$T/err")"
[ ! -e "$part" ] || fail "the .incomplete file is still there"
[ "$(basename "$(readlink "$snap/$cut_file")")" = "$(sha256 "$snap/$cut_file")" ] || fail "resumed file: sha256 differs"
cmp -s "$snap/$cut_file" "$T/model/$cut_file" || fail "resumed file: bytes differ"
stop_hub

# ---- a corrupted file is refused: deleted, not linked
start_hub --corrupt "$SHARD2"
export HF_HOME="$T/hf-corrupt"
RUN pull test-org/tiny-rg >/dev/null 2>"$T/err" && fail "a corrupted file was accepted"
want=$(sha256 "$T/model/$SHARD2")
grep -q "^rgemma: pull: $SHARD2: sha256 mismatch: expected $want, got [0-9a-f]\{64\} " "$T/err" \
    || fail "corrupted: $(cat "$T/err")"
K="$T/hf-corrupt/hub/models--test-org--tiny-rg"
[ ! -e "$K/snapshots/$commit/$SHARD2" ] && [ ! -L "$K/snapshots/$commit/$SHARD2" ] || fail "the corrupted file was linked"
[ ! -e "$K/blobs/$want" ] && [ ! -e "$K/blobs/$want.incomplete" ] || fail "the corrupted download was kept"
stop_hub

# ---- a gated model: 401 without the token, the token from HF_TOKEN or $HF_HOME/token, never sent to the CDN
: >"$T/hub.log"
start_hub --require-token s3cret-token
export HF_HOME="$T/hf-gated"
RUN pull test-org/tiny-rg >/dev/null 2>"$T/err" && fail "pulled a gated model without a token"
grep -q "^rgemma: pull: config.json: .*HTTP 401: the model may be gated.*accept its licence on https://huggingface.co/test-org/tiny-rg and set HF_TOKEN" "$T/err" \
    || fail "401: $(cat "$T/err")"
HF_TOKEN=wrong timeout 60 "$RGEMMA" pull test-org/tiny-rg >/dev/null 2>"$T/err" && fail "pulled a gated model with a wrong token"
grep -q "HTTP 401.*the token that was sent is not allowed" "$T/err" || fail "wrong token: $(cat "$T/err")"
HF_TOKEN=s3cret-token timeout 60 "$RGEMMA" pull test-org/tiny-rg >/dev/null 2>"$T/err" || fail "pull with HF_TOKEN: $(cat "$T/err")"
export HF_HOME="$T/hf-gated2"
mkdir -p "$HF_HOME"
printf 's3cret-token\n' >"$HF_HOME/token"
RUN pull test-org/tiny-rg >/dev/null 2>"$T/err" || fail "pull with \$HF_HOME/token: $(cat "$T/err")"
grep -q "^GET /cdn/.* auth=no" "$T/hub.log" || fail "no CDN download seen"
grep -q "^GET /cdn/.* auth=yes\|^LEAK" "$T/hub.log" && fail "the token was sent to the CDN (another port)"
grep -q "^HEAD /test-org/tiny-rg/resolve/main/config.json .*auth=yes" "$T/hub.log" || fail "the token was not sent to the hub"
stop_hub

# ---- the server is gone: a plain pull fails and says so; --offline uses the cache
export HF_HOME="$T/hf"
snap="$C/snapshots/$commit"
RUN pull test-org/tiny-rg >/dev/null 2>"$T/err" && fail "a pull without a server succeeded"
grep -q "^rgemma: pull: config.json: cannot reach http://127.0.0.1:[0-9]*/.*--offline" "$T/err" || fail "no server: $(cat "$T/err")"
RUN generate -hf test-org/tiny-rg -p hi -n 2 --temp 0 >/dev/null 2>"$T/err" && fail "generate -hf without a server (no --offline) succeeded"
grep -q "^rgemma: generate: -hf test-org/tiny-rg: pull: config.json: cannot reach" "$T/err" || fail "generate, no server: $(cat "$T/err")"
RUN generate -hf test-org/tiny-rg --offline -p hi -n 2 --temp 0 >"$T/got" 2>"$T/err" || fail "generate --offline: $(cat "$T/err")"
RUN generate -m "$T/model" -p hi -n 2 --temp 0 >"$T/want" 2>/dev/null
cmp -s "$T/want" "$T/got" || fail "generate --offline: $(cat "$T/got"), want $(cat "$T/want")"
[ "$(HF_HUB_OFFLINE=1 timeout 60 "$RGEMMA" pull test-org/tiny-rg 2>"$T/err")" = "$snap" ] || fail "HF_HUB_OFFLINE=1 pull: $(cat "$T/err")"
RUN pull --offline test-org/other >/dev/null 2>"$T/err" && fail "offline: a model not in the cache was accepted"
grep -q "^rgemma: pull: offline: test-org/other@main is not in the cache" "$T/err" || fail "offline, not cached: $(cat "$T/err")"
rm "$snap/$SHARD2"
RUN pull --offline test-org/tiny-rg >/dev/null 2>"$T/err" && fail "offline: a snapshot missing a shard was accepted"
grep -q "^rgemma: pull: offline: $SHARD2 is missing from the cached snapshot" "$T/err" || fail "offline, missing shard: $(cat "$T/err")"
echo "pull: ok"
