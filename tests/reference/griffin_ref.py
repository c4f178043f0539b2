#!/usr/bin/env python3
"""A second, independent implementation of the Griffin forward pass in plain
Python (no NumPy), token by token. It writes golden case
folders in the same format as tests/data/golden (config.json,
model.safetensors, golden.json, logits and activation .bin files) for model
shapes the reference data does not cover: lru_width != hidden_size,
head_dim != 16, a window shorter than the conv, soft cap 0, a layer pattern
that starts with attention. `make check-golden DIR=...` then checks the C
engine against it.

usage: griffin_ref.py OUT_DIR   (writes one folder per shape below)
"""
import json, math, os, random, struct, sys

SHAPES = {
    "odd_lru96_attn_first_cap0": dict(vocab=128, D=48, R=96, H=3, hd=16, F=40, layers=4,
                                      pattern=["attention", "recurrent", "recurrent"], W=5, cap=0.0, seq=20),
    "odd_hd32_w3": dict(vocab=96, D=64, R=32, H=2, hd=32, F=48, layers=3,
                        pattern=["recurrent", "attention"], W=3, cap=30.0, seq=16),
}


def bf16(x):
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", u))[0]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def make_weights(s, rng):
    D, R, H, hd, F, V = s["D"], s["R"], s["H"], s["hd"], s["F"], s["vocab"]
    w = {}

    def mat(name, rows, cols, std=None):
        std = std or 1 / math.sqrt(cols)
        w[name] = ([rows, cols], [f32(rng.gauss(0, std)) for _ in range(rows * cols)])

    def vec(name, n, mean=0.0, std=0.1, shape=None):
        w[name] = (shape or [n], [f32(mean + rng.gauss(0, std)) for _ in range(n)])

    mat("model.embed_tokens.weight", V, D, 1.0)
    vec("model.final_norm.weight", D, -1.0, 0.1)
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        vec(p + "temporal_pre_norm.weight", D)
        vec(p + "channel_pre_norm.weight", D)
        for n in ("gate_proj", "up_proj"):
            mat(p + f"mlp_block.{n}.weight", F, D)
            vec(p + f"mlp_block.{n}.bias", F)
        mat(p + "mlp_block.down_proj.weight", D, F)
        vec(p + "mlp_block.down_proj.bias", D)
        t = p + "temporal_block."
        if s["pattern"][i % len(s["pattern"])] == "recurrent":
            for n in ("linear_x", "linear_y"):
                mat(t + n + ".weight", R, D)
                vec(t + n + ".bias", R)
            mat(t + "linear_out.weight", D, R)
            vec(t + "linear_out.bias", D)
            vec(t + "conv_1d.weight", R * 4, 0, 0.5, [R, 1, 4])
            vec(t + "conv_1d.bias", R)
            # a = r^(8 gate): recurrent_param = softplus^-1(-log r), r in 0.7..0.999
            w[t + "rg_lru.recurrent_param"] = ([R], [f32(math.log(math.expm1(-math.log(rng.uniform(0.7, 0.999)))))
                                                     for _ in range(R)])
            bw = R // H
            for n in ("input_gate", "recurrent_gate"):
                vec(t + f"rg_lru.{n}_weight", H * bw * bw, 0, 1 / math.sqrt(bw), [H, bw, bw])
                vec(t + f"rg_lru.{n}_bias", H * bw, 0, 0.1, [H, bw])
        else:
            mat(t + "q_proj.weight", H * hd, D)
            mat(t + "k_proj.weight", hd, D)
            mat(t + "v_proj.weight", hd, D)
            mat(t + "o_proj.weight", D, H * hd)
            vec(t + "o_proj.bias", D)
    return w


def write_safetensors(path, w):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, vals) in w.items():
        b = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def linear(x, wt, rows, cols, bias=None):
    out = []
    for r in range(rows):
        row = wt[r * cols:(r + 1) * cols]
        acc = sum(a * b for a, b in zip(row, x))
        out.append(acc + (bias[r] if bias else 0.0))
    return out


def rmsnorm(x, w, eps=1e-6):
    inv = 1 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * inv * (1 + wi) for v, wi in zip(x, w)]


def gelu(x):
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


class Model:
    def __init__(self, s, w):
        self.s, self.w = s, {k: v[1] for k, v in w.items()}

    def new_state(self):
        s = self.s
        st = []
        for i in range(s["layers"]):
            if s["pattern"][i % len(s["pattern"])] == "recurrent":
                st.append({"conv": [[0.0] * s["R"] for _ in range(3)], "h": [0.0] * s["R"]})
            else:
                st.append({"keys": [], "vals": []})  # (pos, vec) of the last W positions
        return st

    def rope(self, x, pos):
        hd = len(x)
        r = hd // 2
        m = r // 2
        y = list(x)
        for i in range(m):
            phi = pos / (10000.0 ** (2 * i / r))
            c, sn = math.cos(phi), math.sin(phi)
            y[i] = x[i] * c - x[i + m] * sn
            y[i + m] = x[i + m] * c + x[i] * sn
        return y

    def step(self, tok, pos, st, trace=None):
        s, w = self.s, self.w
        D, R, H, hd, F, W = s["D"], s["R"], s["H"], s["hd"], s["F"], s["W"]
        scale = bf16(f32(math.sqrt(D)))
        x = [v * scale for v in w["model.embed_tokens.weight"][tok * D:(tok + 1) * D]]
        if trace is not None:
            trace["hidden"][0].append(x)
        for i in range(s["layers"]):
            p = f"model.layers.{i}."
            t = p + "temporal_block."
            a = rmsnorm(x, w[p + "temporal_pre_norm.weight"])
            if s["pattern"][i % len(s["pattern"])] == "recurrent":
                y = [gelu(v) for v in linear(a, w[t + "linear_y.weight"], R, D, w[t + "linear_y.bias"])]
                u = linear(a, w[t + "linear_x.weight"], R, D, w[t + "linear_x.bias"])
                win = st[i]["conv"] + [u]
                cw = w[t + "conv_1d.weight"]
                c = [w[t + "conv_1d.bias"][ch] + sum(cw[ch * 4 + k] * win[k][ch] for k in range(4))
                     for ch in range(R)]
                st[i]["conv"] = win[1:]
                bw = R // H
                gx, ga = [], []
                for n, out in (("input_gate", gx), ("recurrent_gate", ga)):
                    wt, b = w[t + f"rg_lru.{n}_weight"], w[t + f"rg_lru.{n}_bias"]
                    for h in range(H):
                        for j in range(bw):
                            out.append(b[h * bw + j] + sum(c[h * bw + k] * wt[(h * bw + k) * bw + j]
                                                           for k in range(bw)))
                hnew = []
                for ch in range(R):
                    lp = w[t + "rg_lru.recurrent_param"][ch]
                    sp = lp if lp > 20 else math.log1p(math.exp(lp))
                    log_a = -8.0 * sigmoid(ga[ch]) * sp
                    a_, mult = math.exp(log_a), math.sqrt(1 - math.exp(2 * log_a))
                    if pos == 0:
                        a_, mult = 0.0, 1.0
                    hnew.append(a_ * st[i]["h"][ch] + c[ch] * sigmoid(gx[ch]) * mult)
                st[i]["h"] = hnew
                tout = linear([hv * yv for hv, yv in zip(hnew, y)], w[t + "linear_out.weight"], D, R,
                              w[t + "linear_out.bias"])
            else:
                q = linear(a, w[t + "q_proj.weight"], H * hd, D)
                k = self.rope(linear(a, w[t + "k_proj.weight"], hd, D), pos)
                v = linear(a, w[t + "v_proj.weight"], hd, D)
                keys = [kv for kv in st[i]["keys"] if kv[0] >= pos - W] + [(pos, k)]
                vals = [vv for vv in st[i]["vals"] if vv[0] >= pos - W] + [(pos, v)]
                o = []
                for h in range(H):
                    qh = self.rope(q[h * hd:(h + 1) * hd], pos)
                    sc = [sum(a1 * b1 for a1, b1 in zip(qh, kk)) / math.sqrt(hd) for _, kk in keys]
                    mx = max(sc)
                    e = [math.exp(z - mx) for z in sc]
                    tot = sum(e)
                    o += [sum(e[j] / tot * vals[j][1][d] for j in range(len(e))) for d in range(hd)]
                st[i]["keys"], st[i]["vals"] = keys[-W:], vals[-W:]
                tout = linear(o, w[t + "o_proj.weight"], D, H * hd, w[t + "o_proj.bias"])
            x = [a1 + b1 for a1, b1 in zip(x, tout)]
            b = rmsnorm(x, w[p + "channel_pre_norm.weight"])
            g = linear(b, w[p + "mlp_block.gate_proj.weight"], F, D, w[p + "mlp_block.gate_proj.bias"])
            up = linear(b, w[p + "mlp_block.up_proj.weight"], F, D, w[p + "mlp_block.up_proj.bias"])
            mo = linear([gelu(a1) * b1 for a1, b1 in zip(g, up)], w[p + "mlp_block.down_proj.weight"], D, F,
                        w[p + "mlp_block.down_proj.bias"])
            x = [a1 + b1 for a1, b1 in zip(x, mo)]
            if trace is not None:
                trace["temporal"][i].append(tout)
                trace["mlp"][i].append(mo)
                trace["hidden"][i + 1].append(x)
        hfin = rmsnorm(x, w["model.final_norm.weight"])
        z = linear(hfin, w["model.embed_tokens.weight"], s["vocab"], D)
        cap = s["cap"]
        logits = [cap * math.tanh(v / cap) for v in z] if cap else z
        if trace is not None:
            trace["final"].append(hfin)
        return logits


def write_bin(path, rows):
    with open(path, "wb") as f:
        for r in rows:
            f.write(struct.pack(f"<{len(r)}f", *r))


def make_case(out, name, s, seed):
    rng = random.Random(seed)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    w = make_weights(s, rng)
    write_safetensors(os.path.join(d, "model.safetensors"), w)
    cfg = {"_block_types" if seed % 2 else "block_types": s["pattern"],
           "architectures": ["RecurrentGemmaForCausalLM"], "attention_bias": False,
           "attention_window_size": s["W"], "conv1d_width": 4, "embeddings_scale_by_sqrt_dim": True,
           "head_dim": s["hd"], "hidden_activation": "gelu_pytorch_tanh", "hidden_size": s["D"],
           "intermediate_size": 2 * s["F"], "logits_soft_cap": s["cap"], "lru_width": s["R"],
           "model_type": "recurrent_gemma", "num_attention_heads": s["H"], "num_hidden_layers": s["layers"],
           "num_key_value_heads": 1, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "vocab_size": s["vocab"], "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    m = Model(s, w)
    n, L = s["seq"], s["layers"]
    tokens = [2] + [rng.randrange(3, s["vocab"]) for _ in range(n - 1)]
    trace = {"hidden": [[] for _ in range(L + 1)], "temporal": [[] for _ in range(L)], "mlp": [[] for _ in range(L)], "final": []}
    st = m.new_state()
    logits = [m.step(t, p, st, trace) for p, t in enumerate(tokens)]
    prompt = tokens[:6]
    st = m.new_state()
    for p, t in enumerate(prompt[:-1]):
        m.step(t, p, st)
    nxt, gen, glog = prompt[-1], [], []
    for k in range(8):
        lg = m.step(nxt, len(prompt) - 1 + k, st)
        glog.append(lg)
        nxt = max(range(len(lg)), key=lambda v: lg[v])
        gen.append(nxt)
    files = {}

    def put(key, rows, shape):
        write_bin(os.path.join(d, key + ".bin"), rows)
        files[key] = {"file": key + ".bin", "dtype": "float32", "byte_order": "little",
                      "layout": "row-major (C order)", "shape": shape, "bytes": 4 * math.prod(shape)}

    prefill = [2, s["W"], s["W"] + 2]
    for key in ["logits_full", "logits_decode"] + [f"logits_prefill{p}" for p in prefill]:
        put(key, logits, [n, s["vocab"]])
    put("greedy_logits", glog, [8, s["vocab"]])
    put("hidden_states", [r for layer in trace["hidden"] for r in layer], [L + 1, n, s["D"]])
    put("temporal_out", [r for layer in trace["temporal"] for r in layer], [L, n, s["D"]])
    put("mlp_out", [r for layer in trace["mlp"] for r in layer], [L, n, s["D"]])
    put("final_norm_out", trace["final"], [n, s["D"]])
    tol = {k: {"atol": 5e-4, "rtol": 0.0} for k in ("logits", "hidden_states", "temporal_out", "mlp_out",
                                                   "final_norm_out")}
    golden = {"case": name, "producer": "tests/reference/griffin_ref.py (float64 Python, token by token)",
              "tokens": tokens, "seq_len": n, "prefill_lens": prefill,
              "greedy": {"prompt": prompt, "generated": gen, "steps": 8, "logits_file": "greedy_logits.bin"},
              "files": files, "tolerances": tol}
    json.dump(golden, open(os.path.join(d, "golden.json"), "w"), indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for i, (name, s) in enumerate(SHAPES.items()):
        make_case(sys.argv[1], name, s, 1000 + i)
        print("wrote", os.path.join(sys.argv[1], name))
