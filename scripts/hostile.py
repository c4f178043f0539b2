#!/usr/bin/env python3
"""Helper of scripts/hostile.sh (issue 12): writes the bad inputs, and plays
the hostile HTTP client.

  hostile.py make KIND SEED N BASE OUTDIR   N mutants of one input kind (plus
      hand-made cases) in OUTDIR, and OUTDIR/manifest.tsv: one case a line,
      "name<TAB>stdin file<TAB>mode<TAB>arg<TAB>arg..." (the rgemma argv)
  hostile.py http RGEMMA SEED N BASE OUTDIR  starts `rgemma serve`, sends N
      mutated requests (plus hand-made ones), classifies each answer and
      writes OUTDIR/results.tsv: "name<TAB>class<TAB>detail file"

Everything is drawn from random.Random(SEED, KIND): the same SEED and N give
the same inputs. BASE is the folder hostile.sh prepared (valid inputs)."""
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time

# ---- generic mutations --------------------------------------------------------

NASTY_JSON = [None, True, False, 0, -1, 1, 2, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63, 2**64, -2**63 - 1,
              1e308, -1e308, 0.5, -0.0, 1e-320, "", "x", "\u0000", "\udcff", "A" * 5000, [], {}, [1, 2, 3],
              {"a": 1}, [[[[[]]]]], "@@RAW:1e999@@", "@@RAW:-1e999@@", "@@RAW:NaN@@", "@@RAW:0x10@@",
              "@@RAW:[" * 1 + "1" + "]@@"]


def raw_json(obj):
    """json.dumps, then the "@@RAW:...@@" strings become raw (invalid or extreme) tokens"""
    s = json.dumps(obj, ensure_ascii=False)
    while '"@@RAW:' in s:
        i = s.index('"@@RAW:')
        j = s.index('@@"', i + 7)
        s = s[:i] + s[i + 7:j] + s[j + 3:]
    return s


def json_paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:64]):  # the first ones are enough, and keep it fast
            yield from json_paths(v, path + (i,))


def json_get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def mutate_json(obj, rng, n_ops=None):
    """a few structural edits: a value replaced by a nasty one, a key deleted or
    added, a list emptied, grown or shortened, a number nudged"""
    obj = json.loads(json.dumps(obj))
    desc = []
    for _ in range(n_ops or rng.choice([1, 1, 1, 2, 3])):
        paths = list(json_paths(obj))
        path = rng.choice(paths[1:] or paths)
        parent = json_get(obj, path[:-1]) if path else None
        key = path[-1] if path else None
        cur = json_get(obj, path)
        op = rng.randrange(7)
        if parent is None:
            obj = rng.choice(NASTY_JSON)
            desc.append("root=nasty")
        elif op == 0 or op == 1:
            v = rng.choice(NASTY_JSON)
            parent[key] = v
            desc.append("%s=%s" % ("/".join(map(str, path)), str(v)[:30]))
        elif op == 2:
            del parent[key]
            desc.append("del %s" % "/".join(map(str, path)))
        elif op == 3 and isinstance(cur, (int, float)) and not isinstance(cur, bool):
            v = rng.choice([cur + 1, cur - 1, -cur, cur * 1000, cur * 2**31, 0])
            parent[key] = v
            desc.append("%s=%s" % ("/".join(map(str, path)), v))
        elif op == 4 and isinstance(cur, list):
            if cur and rng.random() < 0.5:
                parent[key] = cur * rng.choice([2, 50])
                desc.append("grow %s" % "/".join(map(str, path)))
            else:
                parent[key] = cur[:rng.randrange(len(cur) + 1)]
                desc.append("cut %s" % "/".join(map(str, path)))
        elif op == 5 and isinstance(parent, dict):
            parent[rng.choice(["x", "", "__metadata__", str(key) + "x"])] = rng.choice(NASTY_JSON)
            desc.append("add key")
        else:
            parent[key] = rng.choice([str(cur), [cur], {"v": cur}])
            desc.append("%s wrapped" % "/".join(map(str, path)))
    return obj, ",".join(desc)


def mutate_bytes(b, rng, hot=None):
    """byte flips, a truncation, random bytes inserted, a range deleted or a
    32/64-bit field zeroed or maxed, at random offsets (in hot, a (start,
    end) range, most of the time)"""
    b = bytearray(b)

    def off():
        if hot and rng.random() < 0.85:
            return rng.randrange(hot[0], max(hot[0] + 1, min(hot[1], len(b))))
        return rng.randrange(max(1, len(b)))

    op = rng.randrange(6)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))), "random"
    if op == 0:
        k = rng.choice([1, 1, 2, 4, 16])
        for _ in range(k):
            o = off()
            if o < len(b):
                b[o] ^= rng.randrange(1, 256)
        return bytes(b), "flip%d" % k
    if op == 1:
        n = off() if rng.random() < 0.7 else rng.randrange(len(b))
        return bytes(b[:n]), "truncate@%d" % n
    if op == 2:
        o = off()
        ins = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 64, 1000])))
        return bytes(b[:o] + ins + b[o:]), "insert%d@%d" % (len(ins), o)
    if op == 3:
        o = off()
        n = rng.choice([1, 8, 100])
        return bytes(b[:o] + b[o + n:]), "delete%d@%d" % (n, o)
    width = rng.choice([4, 8])
    o = off()
    v = rng.choice([0, 2**(8 * width) - 1, 2**(8 * width - 1), rng.randrange(2**(8 * width)), 1])
    b[o:o + width] = v.to_bytes(width, "little")
    return bytes(b[:len(b)]), "u%d=%x@%d" % (8 * width, v, o)


# ---- format-aware mutations ----------------------------------------------------

def safetensors_mut(data, rng):
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    body = data[8 + n:]
    r = rng.random()
    if r < 0.45:  # edit the header's JSON: dtype, shape, offsets, metadata
        names = [k for k in hdr if k != "__metadata__"]
        name = rng.choice(names)
        t = hdr[name]
        field = rng.choice(["dtype", "shape", "data_offsets", "data_offsets", "shape", "any"])
        if field == "dtype":
            t["dtype"] = rng.choice(["F64", "I8", "U8", "F8_E4M3", "BOOL", "", "f32", "BF16", "F16", "I64", 7])
        elif field == "shape":
            s = list(t["shape"])
            c = rng.randrange(6)
            if c == 0 and s:
                s[rng.randrange(len(s))] = rng.choice([0, -1, 2**31, 2**62, 2**64 - 1, 1.5, "3"])
            elif c == 1:
                s.append(rng.choice([1, 2, 0]))
            elif c == 2:
                s = s[:-1]
            elif c == 3:
                s = [2**32, 2**32]
            elif c == 4:
                s = [1] * 70
            else:
                s = s[::-1]
            t["shape"] = s
        elif field == "data_offsets":
            a, b = t["data_offsets"]
            t["data_offsets"] = rng.choice([[b, a], [a, b + 4], [a + 1, b + 1], [0, 0], [a, 2**64 - 1],
                                            [2**63, 2**63 + 4], [-4, b], [a, len(body) + 4], [a], [a, b, b],
                                            [0, b - a], [a + 0.5, b]])
        else:
            hdr, d = mutate_json(hdr, rng)
            return pack_st(hdr, body), "header-json " + d
        return pack_st(hdr, body), "%s.%s=%s" % (name[-24:], field, str(t.get(field))[:40])
    if r < 0.6:  # the 8-byte header length
        v = rng.choice([0, 1, 7, n - 1, n + 1, len(data), len(data) - 7, 2**63, 2**64 - 1, 100 * 2**20])
        return struct.pack("<Q", v) + data[8:], "header_len=%d" % v
    m, d = mutate_bytes(data, rng, (0, 8 + n))
    return m, d


def pack_st(hdr, body):
    h = raw_json(hdr).encode("utf-8", "surrogatepass")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def gguf_fields(b):
    """(offset, width, what) of every count, length, type, dim and offset field"""
    out = []
    p = 8
    out.append((p, 8, "tensor_count"))
    nt = struct.unpack_from("<Q", b, p)[0]
    out.append((p + 8, 8, "kv_count"))
    nkv = struct.unpack_from("<Q", b, p + 8)[0]
    p += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def rstr(p, what):
        out.append((p, 8, what + ".len"))
        n = struct.unpack_from("<Q", b, p)[0]
        return p + 8 + n, b[p + 8:p + 8 + n]

    def rval(p, t, what):
        if t == 8:
            return rstr(p, what)[0]
        if t == 9:
            out.append((p, 4, what + ".array_type"))
            at = struct.unpack_from("<I", b, p)[0]
            out.append((p + 4, 8, what + ".array_count"))
            cnt = struct.unpack_from("<Q", b, p + 4)[0]
            p += 12
            for i in range(cnt):
                p = rval(p, at, what + "[]") if at in (8, 9) else p + sizes[at] * cnt
                if at not in (8, 9):
                    break
            return p
        return p + sizes[t]

    for _ in range(nkv):
        p, key = rstr(p, "key")
        k = key.decode()
        out.append((p, 4, k + ".type"))
        t = struct.unpack_from("<I", b, p)[0]
        p = rval(p + 4, t, k)
    for _ in range(nt):
        p, name = rstr(p, "tensor.name")
        nm = name.decode()
        out.append((p, 4, nm + ".n_dims"))
        nd = struct.unpack_from("<I", b, p)[0]
        p += 4
        for d in range(nd):
            out.append((p, 8, nm + ".dim%d" % d))
            p += 8
        out.append((p, 4, nm + ".ggml_type"))
        out.append((p + 4, 8, nm + ".offset"))
        p += 12
    return out, p


def gguf_mut(data, fields, end, rng):
    r = rng.random()
    if r < 0.5:
        o, w, what = rng.choice(fields)
        cur = int.from_bytes(data[o:o + w], "little")
        v = rng.choice([0, 2**(8 * w) - 1, 2**(8 * w - 1), cur + 1, cur - 1 if cur else 1, cur * 2, cur + 32,
                        rng.randrange(2**(8 * w)), 13, 4096])
        v &= 2**(8 * w) - 1
        b = bytearray(data)
        b[o:o + w] = v.to_bytes(w, "little")
        return bytes(b), "%s=%d (was %d) @%d" % (what, v, cur, o)
    if r < 0.55:
        b = bytearray(data)
        b[4:8] = struct.pack("<I", rng.choice([0, 1, 2, 4, 2**32 - 1]))
        return bytes(b), "version=%d" % struct.unpack_from("<I", b, 4)[0]
    return mutate_bytes(data, rng, (0, end))


def fnv1a(data, h=0xcbf29ce484222325):
    # the state file's checksum (src/util: rg_fnv1a), so that a header edit is
    # not just "checksum mismatch"
    for x in data:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def state_mut(data, rng, vocab):
    b = bytearray(data)
    r = rng.random()
    if r < 0.65:  # a header field, checksum fixed
        fields = [(8, 4, "version"), (12, 4, "header_bytes"), (16, 8, "fingerprint"), (24, 4, "vocab"),
                  (40, 8, "position"), (40, 8, "position"), (48, 8, "floats"), (56, 4, "pending"),
                  (56, 4, "pending"), (60, 4, "pending[0]"), (60, 4, "pending[0]"), (64, 4, "pending[1]"),
                  (124, 4, "reserved")]
        o, w, what = rng.choice(fields)
        cur = int.from_bytes(b[o:o + w], "little")
        v = rng.choice([0, 1, 2**(8 * w) - 1, 2**(8 * w - 1) - 1, 2**(8 * w - 1), cur + 1, vocab, vocab + 7,
                        16, 17, 2**31 - 1, 2**62])
        v &= 2**(8 * w) - 1
        b[o:o + w] = v.to_bytes(w, "little")
        if what == "pending" and v <= 16:  # make the pending ids count: some out of the vocabulary
            for i in range(v):
                b[60 + 4 * i:64 + 4 * i] = rng.choice([0, 2, vocab - 1, vocab, 2**31 - 1, 2**32 - 1]).to_bytes(4, "little")
        desc = "%s=%d" % (what, v)
    elif r < 0.8:  # non-finite or huge values in the state, checksum fixed
        nf = (len(b) - 136) // 4
        for _ in range(rng.choice([1, 10, 1000])):
            i = 136 + 4 * rng.randrange(nf)
            b[i:i + 4] = struct.pack("<f", rng.choice([float("nan"), float("inf"), -float("inf"), 3e38]))
        desc = "non-finite data"
    else:
        m, d = mutate_bytes(bytes(b), rng, (0, 136))
        return m, d + " (checksum not fixed)"
    b[128:136] = struct.pack("<Q", fnv1a(bytes(b[136:]), fnv1a(bytes(b[:128]))))
    return bytes(b), desc


# ---- the kinds ---------------------------------------------------------------

def write(outdir, name, data):
    p = os.path.join(outdir, name)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return p


def make(kind, seed, n, base, outdir):
    rng = random.Random("%s-%s" % (seed, kind))
    os.makedirs(outdir, exist_ok=True)
    rows = []
    B = lambda *p: os.path.join(base, *p)
    small = B("small")
    gen = ["generate", "-n", "2", "--temp", "0", "-t", "1"]

    def row(name, args, stdin="/dev/null", mode="cli"):
        assert all("\t" not in a and "\n" not in a for a in args), args
        # an empty argument would vanish in the shell's tab splitting: spelled @@EMPTY@@
        rows.append("\t".join([name.replace("\t", " ").replace("\n", " "), stdin, mode] +
                               [a if a else "@@EMPTY@@" for a in args]))

    def folder(name, files):
        """a model folder: the files given (name -> bytes), links to the rest of the golden case"""
        d = os.path.join(outdir, name)
        os.makedirs(d, exist_ok=True)
        for f, data in files.items():
            write(d, f, data)
        for f in ("config.json", "model.safetensors"):
            if f not in files and not os.path.exists(os.path.join(d, f)):
                os.symlink(B("golden", f), os.path.join(d, f))
        return d

    if kind == "safetensors":
        src = open(B("golden", "model.safetensors"), "rb").read()
        hand = {"empty": b"", "len-only": struct.pack("<Q", 2), "header-not-json": struct.pack("<Q", 8) + b"notjson!",
                "header-array": pack_st([], b""), "header-empty-obj": pack_st({}, b""),
                "deep-json": struct.pack("<Q", 20000) + b"[" * 10000 + b"]" * 10000,
                "huge-len": struct.pack("<Q", 2**64 - 1) + src[8:]}
        for name, data in hand.items():
            row(name, gen + ["-m", write(outdir, name + ".safetensors", data), "--prompt-ids", "2,3"])
        for i in range(n):
            data, d = safetensors_mut(src, rng)
            row("m%03d %s" % (i, d), gen + ["-m", write(outdir, "m%03d.safetensors" % i, data), "--prompt-ids", "2,3"])
        shutil.copy(B("golden", "config.json"), os.path.join(outdir, "config.json"))
    elif kind == "index":
        src = json.load(open(B("sharded", "model.safetensors.index.json")))
        shards = sorted(set(src["weight_map"].values()))

        def ifolder(name, text):
            d = os.path.join(outdir, name)
            os.makedirs(d)
            write(d, "model.safetensors.index.json", text)
            os.symlink(B("sharded", "config.json"), os.path.join(d, "config.json"))
            for s in shards:
                os.symlink(B("sharded", s), os.path.join(d, s))
            return d
        first = next(iter(src["weight_map"]))
        hand = {"empty": "", "not-json": "{", "array": "[]", "no-map": '{"metadata":{}}',
                "map-empty": '{"weight_map":{}}', "abs-path": json.dumps({"weight_map": {first: "/etc/passwd"}}),
                "dotdot": json.dumps(dict(src, weight_map=dict(src["weight_map"], **{first: "../../../../etc/passwd"}))),
                "dir": json.dumps(dict(src, weight_map=dict(src["weight_map"], **{first: "."}))),
                "self": json.dumps(dict(src, weight_map=dict(src["weight_map"], **{first: "model.safetensors.index.json"}))),
                "number": json.dumps(dict(src, weight_map=dict(src["weight_map"], **{first: 7})))}
        for name, text in hand.items():
            row(name, gen + ["-m", ifolder(name, text), "--prompt-ids", "2,3"])
        for i in range(n):
            if rng.random() < 0.7:
                obj = json.loads(json.dumps(src))
                if rng.random() < 0.6:  # a shard name
                    k = rng.choice(list(obj["weight_map"]))
                    obj["weight_map"][k] = rng.choice(["", "x.safetensors", shards[0] + "x", "/", "a/../" + shards[-1],
                                                       "%s" % ("a" * 5000), "\u0000", 0, None, [], shards[-1]])
                    if rng.random() < 0.3:
                        del obj["weight_map"][k]
                    text, d = raw_json(obj), "weight_map[%s]=%s" % (k[-20:], str(obj["weight_map"].get(k))[:20])
                else:
                    obj, d = mutate_json(obj, rng)
                    text = raw_json(obj)
            else:
                text, d = mutate_bytes(json.dumps(src).encode(), rng)
            row("m%03d %s" % (i, d), gen + ["-m", ifolder("m%03d" % i, text), "--prompt-ids", "2,3"])
    elif kind == "config":
        src = json.load(open(B("golden", "config.json")))
        hand = {"empty": "", "null": "null", "array": "[]", "obj": "{}", "deep": "[" * 100000,
                "bom": "\ufeff" + json.dumps(src), "nul": json.dumps(src)[:10] + "\u0000"}
        for name, text in hand.items():
            row(name, gen + ["-m", folder(name, {"config.json": text}), "--prompt-ids", "2,3"])
        for i in range(n):
            if rng.random() < 0.8:
                obj = json.loads(json.dumps(src))
                k = rng.choice(list(obj))
                if rng.random() < 0.7:
                    obj[k] = rng.choice(NASTY_JSON + [7, 3, 64, 4096, -64, 1e-9])
                    d = "%s=%s" % (k, str(obj[k])[:30])
                else:
                    obj, d = mutate_json(obj, rng)
                text = raw_json(obj)
            else:
                text, d = mutate_bytes(json.dumps(src).encode(), rng)
            row("m%03d %s" % (i, d), gen + ["-m", folder("m%03d" % i, {"config.json": text}), "--prompt-ids", "2,3"])
    elif kind == "gguf":
        src = open(B("small.gguf"), "rb").read()
        fields, end = gguf_fields(src)
        hand = {"empty": b"", "magic": b"GGUF", "v3-only": b"GGUF\x03\0\0\0", "zero-counts": src[:8] + bytes(16),
                "max-kv": src[:16] + b"\xff" * 8 + src[24:], "max-tensors": src[:8] + b"\xff" * 8 + src[16:],
                "header-only": src[:end], "half": src[:len(src) // 2]}
        for name, data in hand.items():
            row(name, gen + ["-m", write(outdir, name + ".gguf", data), "-p", "Hello"])
        for i in range(n):
            data, d = gguf_mut(src, fields, end, rng)
            row("m%03d %s" % (i, d), gen + ["-m", write(outdir, "m%03d.gguf" % i, data), "-p", "Hello"])
    elif kind == "tokenizer.model":
        src = open(B("small", "tokenizer.model"), "rb").read()
        hand = {"empty": b"", "one": b"\x0a", "huge-len": b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                "ff": b"\xff" * 64, "zeros": bytes(1000), "piece-no-text": b"\x0a\x02\x15\x00",
                "half": src[:len(src) // 2], "twice": src + src}
        for name, data in hand.items():
            row(name, ["tokenize", "--tokenizer", write(outdir, name + ".model", data), "Hello <start_of_turn> world"])
        for i in range(n):
            data, d = mutate_bytes(src, rng, (0, len(src)))
            cmd = rng.choice([["tokenize", "--tokenizer"], ["detokenize", "--tokenizer"]])
            arg = ["Hello world, caf\u00e9 <end_of_turn>"] if cmd[0] == "tokenize" else ["2,5,900,999"]
            row("m%03d %s" % (i, d), cmd + [write(outdir, "m%03d.model" % i, data)] + arg)
    elif kind == "tokenizer.json":
        src = json.load(open(B("tokenizer.json")))
        hand = {"empty": "", "obj": "{}", "no-model": json.dumps(dict(src, model=None)),
                "vocab-array": json.dumps(dict(src, model=dict(src["model"], vocab=[]))),
                "id-huge": json.dumps(dict(src, model=dict(src["model"], vocab={"a": 2**40}))),
                "merges-bad": json.dumps(dict(src, model=dict(src["model"], merges=[[1, 2], "a", ["\u2581", "zz"]])))}
        for name, text in hand.items():
            row(name, ["tokenize", "--tokenizer", write(outdir, name + ".json", text), "Hello world"])
        for i in range(n):
            if rng.random() < 0.75:
                obj, d = mutate_json(src, rng)
                text = raw_json(obj)
            else:
                text, d = mutate_bytes(json.dumps(src).encode(), rng)
            row("m%03d %s" % (i, d), ["tokenize", "--tokenizer", write(outdir, "m%03d.json" % i, text),
                                       "Hello world <start_of_turn> \u00e9"])
    elif kind == "state":
        src = open(B("small.state"), "rb").read()
        vocab = struct.unpack_from("<I", src, 24)[0]
        hand = {"empty": b"", "magic-only": src[:8], "header-only": src[:136], "one-more": src + b"\0\0\0\0"}
        for name, data in hand.items():
            row(name, gen + ["-m", small, "--load-state", write(outdir, name + ".state", data), "-p", "more"])
        for i in range(n):
            data, d = state_mut(src, rng, vocab)
            extra = rng.choice([["-p", "more"], ["--prompt-ids", "5"], []])
            row("m%03d %s" % (i, d), gen + ["-m", small, "--load-state", write(outdir, "m%03d.state" % i, data)] + extra)
    elif kind == "prompt":
        specials = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<0x00>",
                    "<0xFF>", "<unused0>", "<start_of_turn>model\n", "\u2581", "<", ">", "</s>", "<s>"]
        hand = {"empty": b"", "nul": b"\0", "nuls": b"a\0b\0\0c", "ff": b"\xff\xfe\xfd",
                "overlong": b"\xc0\xaf\xe0\x80\xaf", "surrogate": b"\xed\xa0\x80\xed\xbf\xbf",
                "cut-utf8": "caf\u00e9".encode()[:-1], "specials": "".join(specials).encode(),
                "long-64k": b"the " * 16384, "many-lines": b"hi\n" * 3000, "crlf": b"a\r\nb\r\n\r\n",
                "one-huge-char": "\U0010FFFF".encode() * 1000}
        tokmode = [[], ["--parse-special"], ["--chat"], ["--chat", "--parse-special"]]
        items = list(hand.items())
        for i in range(n):
            c = rng.randrange(4)
            if c == 0:
                data, d = bytes(rng.randrange(256) for _ in range(rng.choice([1, 10, 300, 3000]))), "random bytes"
            elif c == 1:
                data = "".join(rng.choice(specials + ["a", " ", "\n", "\u00e9", "\U0001F600"])
                               for _ in range(rng.randrange(1, 200))).encode()
                d = "special-token strings"
            elif c == 2:
                base = "Hello <start_of_turn>user\nthere caf\u00e9 \U0001F600<end_of_turn>".encode()
                data, d = mutate_bytes(base * rng.choice([1, 10]), rng)
            else:
                data = bytes(rng.choice([0, 0x80, 0xc3, 0xe2, 0xf0, 0xf8, 0xff, 0x0a, 0x41]) for _ in range(rng.randrange(1, 500)))
                d = "invalid utf-8"
            items.append(("m%03d %s" % (i, d), data))
        for j, (name, data) in enumerate(items):
            f = write(outdir, "p%03d.txt" % j, data)
            if j % 3 == 2:  # chat reads its messages from stdin
                row(name + " (chat stdin)", ["chat", "-m", small, "-n", "2", "--temp", "0", "-t", "1"], stdin=f)
            else:
                row(name, gen + ["-m", small, "-f", f] + rng.choice(tokmode))
    elif kind == "eval":
        lines = [l for l in open(B("eval.jsonl"), encoding="utf-8") if l.strip() and not l.startswith("#")]
        hand = {"empty": "", "blank": "\n\n", "not-json": "{\n", "array": "[]\n", "string": '"x"\n',
                "no-ids": '{"label":0}\n', "deep": "[" * 50000 + "\n", "huge-line": '{"context_ids":[' +
                ",".join(["2"] * 400000) + '],"choices_ids":[[3]],"label":0}\n'}
        for name, text in hand.items():
            row(name, ["eval", "-m", small, "--task", write(outdir, name + ".jsonl", text), "-t", "1"])
        for i in range(n):
            ls = list(lines)
            k = rng.randrange(len(ls))
            if rng.random() < 0.75:
                obj, d = mutate_json(json.loads(ls[k]), rng)
                ls[k] = raw_json(obj) + "\n"
            else:
                m, d = mutate_bytes(ls[k].encode(), rng)
                ls[k] = m.decode("utf-8", "surrogateescape")
            f = write(outdir, "m%03d.jsonl" % i, "".join(ls).encode("utf-8", "surrogateescape"))
            row("m%03d line %d: %s" % (i, k + 1, d), ["eval", "-m", small, "--task", f, "-t", "1", "-n", "4"])
    elif kind == "train":
        doc = {"text": "The quick brown fox jumps over the lazy dog. " * 4}
        chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                             {"role": "assistant", "content": "Hello! <end_of_turn> caf\u00e9"}]}
        lines = [raw_json(doc) + "\n", raw_json(chat) + "\n"] * 2
        hand = {"empty": "", "blank": "\n \n\t\n", "not-json": "{\n", "array": "[]\n", "string": '"x"\n',
                "both": raw_json(dict(doc, **chat)) + "\n", "no-key": '{"prompt": "x"}\n',
                "messages-obj": '{"messages": {"role": "user"}}\n', "messages-empty": '{"messages": []}\n',
                "role-number": '{"messages": [{"role": 1, "content": "x"}]}\n',
                "content-list": '{"messages": [{"role": "user", "content": ["x"]}]}\n',
                "user-only": '{"messages": [{"role": "user", "content": "no reply"}]}\n' * 8,
                "nul": '{"text": "a\\u0000b"}\n', "deep": "[" * 50000 + "\n", "huge-line": raw_json({"text": "x " * 200000}) + "\n"}
        train = lambda f, i: ["train", "--data", f, "-m", small, "--ctx", "8", "--batch", "1", "--steps", "1",
                              "--eval-frac", "0", "-t", "1", "-o", os.path.join(outdir, "out%s" % i)]
        for name, text in hand.items():
            row(name, train(write(outdir, name + ".jsonl", text), name))
        for i in range(n):
            ls = list(lines)
            k = rng.randrange(len(ls))
            if rng.random() < 0.75:
                obj, d = mutate_json(json.loads(ls[k]), rng)
                ls[k] = raw_json(obj) + "\n"
            else:
                m, d = mutate_bytes(ls[k].encode(), rng)
                ls[k] = m.decode("utf-8", "surrogateescape")
            f = write(outdir, "m%03d.jsonl" % i, "".join(ls).encode("utf-8", "surrogateescape"))
            row("m%03d line %d: %s" % (i, k + 1, d), train(f, "m%03d" % i))
    elif kind == "flags":
        vals = ["", "-1", "0", "1", "2", "-2", "3", "65", "257", "4097", "1073741824", "2147483648", "-2147483649",
                "99999999999999999999", "1e40", "-1e40", "nan", "inf", "-inf", "0x10", "1.5", "abc", " 1", "1 ",
                "+5", "-0", "1e-45", "\uff11", "--", "-h"]
        text = B("text.txt")
        cmds = {
            "generate": (["generate", "-m", small, "-p", "hi", "-n", "2", "--temp", "0", "-t", "1"],
                         ["-n", "-s", "-t", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                          "--repeat-last-n", "--presence-penalty", "--frequency-penalty", "--parallel",
                          "--prompt-ids", "--stop", "-p", "--system"]),
            "chat": (["chat", "-m", small, "-n", "2", "--temp", "0", "-t", "1"],
                     ["-n", "-s", "-t", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                      "--repeat-last-n", "--presence-penalty", "--frequency-penalty"]),
            "perplexity": (["perplexity", "-m", small, "-f", text, "-t", "1", "-c", "16"], ["-c", "--stride", "-t"]),
            "eval": (["eval", "-m", small, "--task", B("eval.jsonl"), "-t", "1", "-n", "4"],
                     ["-k", "--limit", "-b", "--samples", "-n", "--seed", "--temp", "--top-k", "--top-p",
                      "--shot-sep", "--extract"]),
            "serve": (["serve", "-m", small, "--port", "0", "-t", "1"],
                      ["--port", "-np", "--queue", "--timeout", "--cache-states", "--max-body", "--max-tokens",
                       "--header-timeout", "--max-conn", "--max-conn-per-ip", "--prefill-chunk", "-t", "--host"]),
            "tokenize": (["tokenize", "-m", small, "-t", "1"], ["-t"]),
            "quantize": (["quantize", "--eval", B("golden"), B("golden.gguf"), "-n", "64", "--ctx", "16", "-t", "1"],
                         ["-n", "--ctx", "--seed", "-t"]),
            "bench": (["bench", "-m", B("golden"), "-p", "8", "-n", "4", "-d", "0", "-r", "1", "-t", "1"],
                      ["-p", "-n", "-d", "-b", "-r", "-t", "-k", "-o"]),
            "synth": (["synth", "--preset", B("golden", "config.json"), "--dtype", "f32", "-t", "1"],
                      ["--seed", "--max-shard-size", "--dtype", "-t", "--preset"]),
            "train": (["train", "--data", text, "-m", small, "--ctx", "8", "--batch", "1", "--steps", "2", "-t", "1"],
                      ["--ctx", "--batch", "--steps", "--lr", "--min-lr", "--warmup", "--weight-decay", "--clip",
                       "--beta2", "--eval-every", "--eval-frac", "--save-every", "--seed", "--stop-after",
                       "--log-every", "--lora", "--lora-alpha", "--save-dtype", "-t"]),
        }
        for name, (base_args, flags) in cmds.items():  # a flag without its value, and an unknown flag
            row("%s missing value" % name, base_args + [flags[0]], mode="serve" if name == "serve" else "cli")
            row("%s unknown flag" % name, base_args + ["--no-such-flag", "1"], mode="serve" if name == "serve" else "cli")
        for i in range(n):
            name = rng.choice(list(cmds))
            base_args, flags = cmds[name]
            flag = rng.choice(flags)
            v = rng.choice(vals)
            if flag == "-n" and name in ("generate", "chat") and v in ("-1", "1073741824"):
                v = "-2"  # -1 = until EOS and 2^30 tokens are valid unbounded runs on a random model
            if flag in ("--prompt-ids", "--stop") and rng.random() < 0.5:
                v = rng.choice(["2,", ",", "2,,3", "-5", "2,999999", "2,1000", "2," * 20 + "2", "\u00e9"])
            if flag in ("-p", "-n", "-d", "-b") and name == "bench" and rng.random() < 0.5:
                v = rng.choice(["1,", ",", "0,0", "8,-1", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "0"])
            if v == "1073741824" and name in ("bench", "quantize", "perplexity", "eval"):
                v = "-3"  # in range, and a legitimately long run
            if name == "train" and flag in ("--steps", "--batch", "--ctx") and v in ("257", "4097", "1073741824"):
                v = "-3"  # a long run, not a bad value
            args = list(base_args)
            if name in ("synth", "train"):
                args += ["-o", os.path.join(outdir, "%s%03d" % (name, i))]
            args += [flag, v]
            row("m%03d %s %s %r" % (i, name, flag, v), args, mode="serve" if name == "serve" else "cli",
                stdin=B("hello.txt") if name == "chat" else "/dev/null")
    else:
        sys.exit("unknown kind " + kind)
    with open(os.path.join(outdir, "manifest.tsv"), "w", encoding="utf-8", errors="surrogateescape") as f:
        for r in rows:
            f.write(r + "\n")


# ---- HTTP ---------------------------------------------------------------------

def http_cases(rng, n):
    """(name, kind, raw bytes): kind "api" (a well-formed HTTP request: a 4xx
    must carry a JSON error) or "proto" (malformed HTTP: a 4xx or a closed
    connection is the protocol's refusal)"""
    bodies = {
        "/v1/chat/completions": {"model": "tiny", "messages": [{"role": "system", "content": "Be brief."},
                                                                {"role": "user", "content": "Hi <start_of_turn>"}],
                                 "max_tokens": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 3,
                                 "stop": ["x"], "stream": False},
        "/v1/completions": {"prompt": "The capital of", "max_tokens": 4, "n_predict": 3, "repeat_penalty": 1.1,
                            "repeat_last_n": -1, "ignore_eos": True, "stop": ".", "stream": False},
        "/tokenize": {"content": "Hello <start_of_turn>", "add_special": True, "with_pieces": True},
        "/detokenize": {"tokens": [2, 5, 999]},
    }

    def req(method, path, body=b"", headers=None, version="HTTP/1.1"):
        h = {"Host": "127.0.0.1", "Connection": "close"}
        if body or method == "POST":
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(body))
        h.update(headers or {})
        head = "%s %s %s\r\n" % (method, path, version) + "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None)
        return head.encode("latin-1", "replace") + b"\r\n" + body

    out = []
    b = lambda o: raw_json(o).encode("utf-8", "surrogatepass")
    hand = [
        ("GET /health", "api", req("GET", "/health")),
        ("DELETE chat", "api", req("DELETE", "/v1/chat/completions")),
        ("GET chat", "api", req("GET", "/v1/chat/completions")),
        ("PUT completions", "api", req("PUT", "/v1/completions", b(bodies["/v1/completions"]))),
        ("unknown path", "api", req("GET", "/v2/nothing")),
        ("path ..", "api", req("GET", "/v1/../../etc/passwd")),
        ("path %00", "api", req("GET", "/health%00x")),
        ("long path", "proto", req("GET", "/" + "a" * 100000)),
        ("empty body", "api", req("POST", "/v1/chat/completions")),
        ("body null", "api", req("POST", "/v1/chat/completions", b"null")),
        ("body array", "api", req("POST", "/v1/completions", b"[]")),
        ("body deep", "api", req("POST", "/v1/completions", b"[" * 100000)),
        ("body 2 MiB", "api", req("POST", "/v1/completions", b'{"prompt":"' + b"a" * (2 << 20) + b'"}')),
        ("raw garbage", "proto", bytes(rng.randrange(256) for _ in range(500))),
        ("empty request", "proto", b"\r\n\r\n"),
        ("HTTP/0.9", "proto", b"GET /health\r\n"),
        ("HTTP/2 preface", "proto", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("no Host", "proto", req("GET", "/health", headers={"Host": None})),
        ("bad version", "proto", req("GET", "/health", version="HTTP/9.9")),
        ("negative length", "proto", req("POST", "/v1/completions", b"{}", {"Content-Length": "-5"})),
        ("huge length", "proto", req("POST", "/v1/completions", b"{}", {"Content-Length": "99999999999999999999"})),
        ("length too long (truncated body)", "proto", req("POST", "/v1/completions", b'{"prompt":"a"}',
                                                          {"Content-Length": "100"})),
        ("bad chunk size", "proto", req("POST", "/v1/completions", b"zz\r\nabc\r\n0\r\n\r\n",
                                        {"Transfer-Encoding": "chunked", "Content-Length": None})),
        ("huge chunk size", "proto", req("POST", "/v1/completions", b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n",
                                         {"Transfer-Encoding": "chunked", "Content-Length": None})),
        ("long header", "proto", req("GET", "/health", headers={"X-A": "b" * 200000})),
        ("header without colon", "proto", b"GET /health HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n"),
        ("NUL in request line", "proto", b"GET /hea\0lth HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("OPTIONS", "api", req("OPTIONS", "/v1/chat/completions")),
        ("stream + bad field", "api", req("POST", "/v1/chat/completions",
                                          b(dict(bodies["/v1/chat/completions"], stream=True, top_k=-5)))),
        ("messages of 5000", "api", req("POST", "/v1/chat/completions", b({"messages": [{"role": "user", "content": "a"}] * 5000, "max_tokens": 1}))),
        ("ids out of vocab", "api", req("POST", "/v1/completions", b({"prompt": [2, 1000, 2**31 - 1], "max_tokens": 1}))),
        ("ids negative", "api", req("POST", "/detokenize", b({"tokens": [-1, 2**31, 1e300]}))),
        ("stop list 100", "api", req("POST", "/v1/completions", b({"prompt": "a", "stop": ["x"] * 100, "max_tokens": 1}))),
        ("invalid utf-8", "api", req("POST", "/v1/completions", b'{"prompt":"\xff\xfe","max_tokens":1}')),
        ("lone surrogate", "api", req("POST", "/v1/completions", b'{"prompt":"\\ud800","max_tokens":1}')),
    ]
    out.extend(hand)
    paths = list(bodies)
    for i in range(n):
        path = rng.choice(paths)
        c = rng.random()
        if c < 0.6:
            obj, d = mutate_json(bodies[path], rng)
            if rng.random() < 0.5:
                obj, d2 = mutate_json(obj, rng) if isinstance(obj, (dict, list)) else (obj, "")
                d += "," + d2
            if isinstance(obj, dict) and "stream" in obj and rng.random() < 0.3:
                obj["stream"] = True
            out.append(("m%03d %s %s" % (i, path, d), "api", req("POST", path, b(obj))))
        elif c < 0.8:
            m, d = mutate_bytes(b(bodies[path]), rng)
            out.append(("m%03d %s body %s" % (i, path, d), "api", req("POST", path, m)))
        else:
            m, d = mutate_bytes(req("POST", path, b(bodies[path])), rng, (0, 120))
            out.append(("m%03d %s request %s" % (i, path, d), "proto", m))
    return out


def recv_response(s, deadline):
    """the raw response: headers, then Content-Length bytes, a chunked body
    to its last chunk, or up to the close"""
    buf = b""
    while True:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return buf, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return buf, "reset"
        if not chunk:
            return buf, "closed"
        buf += chunk
        if b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            hl = head.lower()
            if b"content-length:" in hl:
                n = int(hl.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    return buf, "complete"
            elif b"transfer-encoding: chunked" in hl and body.endswith(b"0\r\n\r\n"):
                return buf, "complete"


def send_case(port, raw, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        # no half-close after sending: the server takes a closed socket for a
        # client that hung up; a short body meets --header-timeout instead
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may answer and close before reading everything (e.g. 413)
        return recv_response(s, time.time() + timeout)
    finally:
        s.close()


def health(port):
    try:
        buf, how = send_case(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10)
        return buf.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


SAN = (b"ERROR: AddressSanitizer", b"runtime error:", b"ERROR: LeakSanitizer")


def start_server(rgemma, base, outdir, k):
    log = os.path.join(outdir, "server%d.log" % k)
    p = subprocess.Popen([rgemma, "serve", "-m", os.path.join(base, "small"), "--alias", "tiny", "--port", "0",
                          "-np", "2", "-t", "1", "--max-tokens", "64", "--timeout", "15", "--header-timeout", "2",
                          "--queue", "4"], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    for _ in range(600):
        text = open(log, "rb").read()
        if b"listening on http://127.0.0.1:" in text:
            return p, int(text.split(b"listening on http://127.0.0.1:")[1].split()[0]), log
        if p.poll() is not None:
            sys.exit("hostile.py: the server did not start:\n" + text.decode(errors="replace"))
        time.sleep(0.1)
    p.kill()
    sys.exit("hostile.py: the server did not start within 60 s")


def http(rgemma, seed, n, base, outdir):
    rng = random.Random("%s-http" % seed)
    os.makedirs(outdir, exist_ok=True)
    cases = http_cases(rng, n)
    k = 0
    p, port, log = start_server(rgemma, base, outdir, k)
    res = open(os.path.join(outdir, "results.tsv"), "w", errors="backslashreplace")  # names may hold lone surrogates
    for i, (name, kind, raw) in enumerate(cases):
        detail = os.path.join(outdir, "c%03d.txt" % i)
        try:
            buf, how = send_case(port, raw, 30)
        except OSError as e:
            buf, how = b"", "connect: %s" % e
        status = int(buf[9:12]) if buf.startswith(b"HTTP/1.") and buf[9:12].isdigit() else 0
        body = buf.partition(b"\r\n\r\n")[2]
        alive = health(port)
        dead = p.poll() is not None
        if dead:
            cls = "crash"
        elif not alive or how == "timeout":
            cls = "hang"
        elif 200 <= status < 300:
            cls = "accepted"
        elif 400 <= status < 500 or status == 503:
            json_error = b'"error"' in body and body.lstrip()[:1] == b"{"
            cls = "clear" if json_error or kind == "proto" or status == 503 and json_error else "unclear"
        elif status == 505 and kind == "proto":
            cls = "clear"  # a request claiming another HTTP version: HTTP's own answer (libmicrohttpd's)
        elif status == 0 and how in ("closed", "reset") and kind == "proto":
            cls = "clear"  # malformed HTTP: closing the connection is the refusal
        else:
            cls = "unclear"
        if any(s in open(log, "rb").read() for s in SAN):
            cls = "crash"
        with open(detail, "wb") as f:
            f.write(b"request (%d bytes): " % len(raw) + raw[:600] + b"\n--- answer (" + how.encode() + b"): " +
                    buf[:1500] + b"\n")
            if cls in ("crash", "hang"):
                f.write(b"--- server log (tail):\n" + b"\n".join(open(log, "rb").read().splitlines()[-30:]) + b"\n")
        res.write("%s\t%s\t%s\t%s\n" % (name.replace("\t", " ").replace("\n", " "), cls, detail, kind))
        res.flush()
        if cls in ("crash", "hang"):  # a fresh server for the next cases
            if p.poll() is None:
                p.kill()
            p.wait()
            k += 1
            p, port, log = start_server(rgemma, base, outdir, k)
    p.terminate()
    try:
        rc = p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hang at SIGTERM"
    text = open(log, "rb").read()
    if rc != 0 or any(s in text for s in SAN):
        detail = os.path.join(outdir, "stop.txt")
        open(detail, "wb").write(b"exit status %s at SIGTERM\n" % str(rc).encode() + text[-4000:])
        res.write("server stop (SIGTERM)\t%s\t%s\tproto\n" % ("hang" if rc == "hang at SIGTERM" else "crash", detail))
    res.close()


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif len(sys.argv) == 7 and sys.argv[1] == "http":
        http(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        sys.exit(__doc__)
