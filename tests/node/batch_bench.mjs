// Figures of rgemma serve's continuous batching (no pass/fail), for
// scripts/bench-serve.sh --batch:
//   1. one streaming client alone: its tokens/s;
//   2. CLIENTS streaming clients at once: aggregate tokens/s, errors;
//   3. CLIENTS-1 clients streaming, then a PROMPT-token prompt arrives: the
//      gaps between their tokens before it (median, p99) and while it is
//      processed (p99), as multiples of the median.
// usage: node batch_bench.mjs URL CLIENTS GEN PROMPT
// Requests are /v1/completions with token ids as the prompt (exact lengths)
// and ignore_eos, so every stream yields GEN tokens.
const [url, clients = "16", gen = "64", promptLen = "512"] = process.argv.slice(2);
const C = Number(clients), G = Number(gen), P = Number(promptLen);
const now = () => performance.now() / 1000;

function ids(seed, n) { // n token ids from a small generator; 2 (BOS) first
    const v = [2];
    let x = seed * 7919 + 17;
    while (v.length < n) {
        x = (x * 1103515245 + 12345) % 2147483648;
        v.push(300 + (x % 200000));
    }
    return v;
}

// One streamed completion: the arrival time of each chunk that carries text.
async function stream(seed, maxTokens, promptIds) {
    const body = { prompt: promptIds ?? ids(seed, 8), max_tokens: maxTokens, stream: true, ignore_eos: true,
                   temperature: 1, seed };
    const res = await fetch(`${url}/v1/completions`, { method: "POST", body: JSON.stringify(body),
                                                       headers: { "Content-Type": "application/json" } });
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
    const times = [];
    const dec = new TextDecoder();
    let buf = "", done = false;
    for await (const part of res.body) {
        buf += dec.decode(part, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
            const ev = buf.slice(0, i).trim();
            buf = buf.slice(i + 2);
            if (!ev.startsWith("data: ")) continue;
            const d = ev.slice(6);
            if (d === "[DONE]") { done = true; continue; }
            const j = JSON.parse(d);
            if (j.error) throw new Error(JSON.stringify(j.error));
            if (j.choices?.[0]?.text) times.push(now());
        }
    }
    if (!done) throw new Error("stream ended without [DONE]");
    return times;
}

const rate = (t) => (t.length - 1) / (t[t.length - 1] - t[0]);
const quantile = (v, q) => { const s = [...v].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };

// 1. alone
const alone = await stream(1, G);
console.log(`1 client: ${alone.length} tokens, ${rate(alone).toFixed(2)} t/s`);

// 2. C at once
let errors = 0;
const t0 = now();
const all = await Promise.all([...Array(C).keys()].map((i) => stream(100 + i, G).catch((e) => {
    errors++;
    console.error(`client ${i}: ${e.message}`);
    return [];
})));
const tokens = all.reduce((s, t) => s + t.length, 0);
const first = Math.min(...all.filter((t) => t.length).map((t) => t[0]));
const last = Math.max(...all.filter((t) => t.length).map((t) => t[t.length - 1]));
console.log(`${C} clients: ${tokens} tokens in ${(now() - t0).toFixed(1)} s, aggregate ${(tokens / (last - first)).toFixed(2)} t/s ` +
            `from first to last token (${(tokens / (last - first) / rate(alone)).toFixed(2)}x one client), ${errors} errors`);

// 3. C-1 streams, then a P-token prompt
const D = C - 1;
const generated = async () => {
    const m = await fetch(`${url}/metrics`).then((r) => r.text());
    return Number((m.match(/^rgemma_generated_tokens_total (\d+)/m) || [0, 0])[1]);
};
const base = await generated();
const streams = [...Array(D).keys()].map((i) => stream(200 + i, G));
let promptStart = 0, promptEnd = 0;
// the prompt arrives once the streams are well under way (a third of their
// tokens given: the first steps are not yet steady)
const arrival = (async () => {
    while ((await generated()) < base + D * Math.floor(G / 3)) await new Promise((r) => setTimeout(r, 100));
    promptStart = now();
    const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: ids(999, P), max_tokens: 1, temperature: 0 }) });
    await res.text();
    promptEnd = now();
    if (res.status !== 200) throw new Error(`prompt: status ${res.status}`);
})();
const got = await Promise.all(streams);
await arrival;
const before = [], during = [];
for (const t of got)
    for (let k = 1; k < t.length; k++) {
        const g = t[k] - t[k - 1];
        if (t[k] <= promptStart) before.push(g);
        else if (t[k - 1] < promptEnd) during.push(g);
    }
const med = quantile(before, 0.5);
console.log(`${D} streams + a ${P}-token prompt (processed in ${(promptEnd - promptStart).toFixed(2)} s): ` +
            `gap median ${(med * 1000).toFixed(0)} ms, p99 ${(quantile(before, 0.99) * 1000).toFixed(0)} ms before it ` +
            `(${before.length} gaps); p99 while it is processed ${(quantile(during, 0.99) * 1000).toFixed(0)} ms ` +
            `= ${(quantile(during, 0.99) / med).toFixed(2)}x the median (${during.length} gaps)`);
