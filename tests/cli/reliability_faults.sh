#!/bin/sh
# Faults (issue 12): kill -9 during synth or --save-state leaves no file that looks complete
# and the next run succeeds; on a full or read-only disk (a small tmpfs)
# every writer (quantize, synth, --save-state) fails with a clear error, leaves
# the old file intact and no temporary behind. The tmpfs part needs mount
# (root); without it that part is skipped with a message.
set -u
RGEMMA=${RGEMMA:-build/rgemma}
T=$(mktemp -d /tmp/rgemma-cli-faults.XXXXXX)
MNT=$T/mnt
mounted=0
cleanup() {
    [ $mounted -eq 1 ] && umount "$MNT" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
D=tests/data/golden/dev_4layer

# --- kill -9 during synth: the shard is written as .tmp and renamed
sed 's/"intermediate_size": 384/"intermediate_size": 65536/' "$D/config.json" >"$T/big.json"
"$RGEMMA" synth --preset "$T/big.json" --dtype f32 --seed 1 -t 1 -o "$T/s" >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -e "$T/s/model.safetensors.tmp" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ -e "$T/s/model.safetensors.tmp" ] || echo "note: synth finished before it could be killed"
rm -f "$T/s/tokenizer.json" "$T/s/tokenizer.model" # synth copies Gemma's (256000 pieces, not this vocabulary)
# a shard under its final name is a whole one; without it there is no model
if [ -e "$T/s/model.safetensors" ]; then
    "$RGEMMA" generate -m "$T/s" --prompt-ids 2 -n 1 >/dev/null 2>&1 || fail "a killed synth left a partial shard"
else
    "$RGEMMA" generate -m "$T/s" --prompt-ids 2 -n 1 >/dev/null 2>&1 && fail "a killed synth left a loadable model"
fi
"$RGEMMA" synth --preset "$T/big.json" --dtype f32 --seed 1 -o "$T/s" >/dev/null 2>&1 || fail "synth after kill -9"
[ ! -e "$T/s/model.safetensors.tmp" ] || fail "the run after kill -9 left the temporary"
rm -f "$T/s/tokenizer.json" "$T/s/tokenizer.model"
"$RGEMMA" generate -m "$T/s" --prompt-ids 2,5 -n 1 >/dev/null 2>&1 || fail "the model written after kill -9 does not load"

# --- kill -9 during --save-state: written as .tmp and renamed. A window of
# 2^20 positions makes the state 128 MiB, long enough to write to be caught.
sed 's/"attention_window_size": [0-9]*/"attention_window_size": 1048576/' "$D/config.json" >"$T/win.json"
"$RGEMMA" synth --preset "$T/win.json" --dtype f32 --seed 1 -o "$T/w" >/dev/null 2>&1 || fail "synth (big window)"
rm -f "$T/w/tokenizer.json" "$T/w/tokenizer.model"
"$RGEMMA" generate -m "$T/w" --prompt-ids 2,5 -n 2 --temp 0 --save-state "$T/w.state" >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -e "$T/w.state.tmp" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
[ -e "$T/w.state.tmp" ] || echo "note: --save-state finished before it could be killed"
if [ -e "$T/w.state" ]; then # a state under its final name is a whole one
    "$RGEMMA" generate -m "$T/w" --load-state "$T/w.state" -n 1 >/dev/null 2>&1 || fail "a killed --save-state left a partial state"
fi
"$RGEMMA" generate -m "$T/w" --prompt-ids 2,5 -n 2 --temp 0 --save-state "$T/w.state" >/dev/null 2>&1 \
    || fail "--save-state after kill -9"
[ ! -e "$T/w.state.tmp" ] || fail "the run after kill -9 left the temporary"
"$RGEMMA" generate -m "$T/w" --load-state "$T/w.state" -n 1 >/dev/null 2>&1 || fail "the state written after kill -9 does not load"
rm -rf "$T/w" "$T/w.state"

# --- a full and a read-only disk
mkdir "$MNT"
if ! mount -t tmpfs -o size=256k tmpfs "$MNT" 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (not root?): full/read-only disk cases not run"
    exit 0
fi
mounted=1
"$RGEMMA" generate -m "$D" --prompt-ids 2,5,6 -n 2 --temp 0 --save-state "$MNT/s.state" >/dev/null 2>&1 || fail "save state"
echo old >"$MNT/q.gguf"
sum=$(cksum <"$MNT/s.state")
head -c 240k /dev/zero >"$MNT/filler" 2>/dev/null # the disk is now (nearly) full
# writers: error, old file intact, no temporary
"$RGEMMA" quantize "$D" "$MNT/q.gguf" --type q8_0 >/dev/null 2>"$T/err" && fail "quantize on a full disk exited 0"
grep -q "^rgemma: quantize: .*No space left on device" "$T/err" || fail "quantize full disk: $(cat "$T/err")"
[ "$(cat "$MNT/q.gguf")" = old ] && [ ! -e "$MNT/q.gguf.tmp" ] || fail "quantize full disk: old output or temporary"
"$RGEMMA" generate -m "$D" --prompt-ids 2,7 -n 2 --temp 0 --save-state "$MNT/s.state" >/dev/null 2>"$T/err" \
    && fail "--save-state on a full disk exited 0"
grep -q "^rgemma: generate: .*s.state" "$T/err" || fail "save-state full disk: $(cat "$T/err")"
[ "$(cksum <"$MNT/s.state")" = "$sum" ] && [ ! -e "$MNT/s.state.tmp" ] || fail "save-state full disk: old state changed"
"$RGEMMA" synth --preset "$D/config.json" --dtype f32 -o "$MNT/syn" >/dev/null 2>"$T/err" && fail "synth on a full disk exited 0"
grep -q "^rgemma: synth: .*No space left on device" "$T/err" || fail "synth full disk: $(cat "$T/err")"
[ ! -e "$MNT/syn/model.safetensors" ] && [ ! -e "$MNT/syn/model.safetensors.tmp" ] || fail "synth full disk left a shard"
rm -f "$MNT/filler"
mount -o remount,ro "$MNT" || fail "remount read-only"
"$RGEMMA" quantize "$D" "$MNT/q.gguf" --type q8_0 >/dev/null 2>"$T/err" && fail "quantize on a read-only disk exited 0"
grep -q "^rgemma: quantize: .*Read-only file system" "$T/err" || fail "quantize read-only: $(cat "$T/err")"
"$RGEMMA" chat -m "$D" --save-state "$MNT/c.state" </dev/null >/dev/null 2>"$T/err" && fail "chat on a read-only disk exited 0"
grep -q "^rgemma: chat: --save-state $MNT/c.state: cannot write: Read-only file system" "$T/err" \
    || fail "chat read-only: $(cat "$T/err")"
[ "$(cat "$MNT/q.gguf")" = old ] && [ "$(cksum <"$MNT/s.state")" = "$sum" ] || fail "read-only: old files changed"
exit 0
