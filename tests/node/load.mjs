// Load test for rgemma serve (node's http module only): C clients each send
// streaming chat requests back to back for S seconds, check every stream
// (status 200, SSE chunks that parse, a finish_reason, usage, "data: [DONE]"
// last, no error event), sample the server's RSS, and print the figures.
// usage: node load.mjs BASE_URL SERVER_PID CLIENTS SECONDS MAX_TOKENS [HANGUP MALFORMED]
// Soak mode: a fraction HANGUP of the requests hang up after their first
// chunk, a fraction MALFORMED sends a bad body (it must get a 4xx); 503 (the
// documented "busy") is counted, not an error; any other 5xx is an error.
// Prints one JSON line; exits 1 if any request failed or RSS kept growing.
import http from "node:http";
import { readFileSync } from "node:fs";

const [base, pid, clients, seconds, maxTokens, hangupArg, malformedArg] = process.argv.slice(2);
const hangupFraction = Number(hangupArg ?? 0), malformedFraction = Number(malformedArg ?? 0);
// a fixed pseudo-random number in [0, 1) per request id and purpose
const rand = (id, salt) => ((Math.imul(id + 1, 2654435761) ^ Math.imul(salt, 40503)) >>> 0) % 10007 / 10007;
const malformed = ['{"messages": [', '{"messages": "hi"}', '{"messages": [{"role": "user", "content": "x"}], "max_tokens": -3}',
  '{"messages": [{"role": "wizard", "content": "x"}]}', '[1, 2, 3]', '{"messages": [{"role": "user", "content": "a\\u0000b"}]}',
  '\xff\xfe', '{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}'];
const url = new URL("/v1/chat/completions", base);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(clients) });
const words = ["river", "stone", "light", "north", "paper", "window", "garden", "signal", "copper", "winter"];

function rssKiB() {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]);
}

// One streamed chat request; resolves {tokens} or rejects with what was wrong.
function request(id) {
  const bad = rand(id, 1) < malformedFraction, hang = !bad && rand(id, 2) < hangupFraction;
  const body = bad ? malformed[id % malformed.length] : JSON.stringify({
    messages: [{ role: "user", content: `Tell me about the ${words[id % 10]} number ${id}.` }],
    max_tokens: Number(maxTokens), temperature: 0.8, seed: id, ignore_eos: true, stream: true,
  });
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", agent: hang ? undefined : agent,
                                    headers: { "Content-Type": "application/json" } }, (res) => {
      let raw = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        raw += d;
        if (hang && res.statusCode === 200) {
          req.destroy();
          resolve({ tokens: 0, hung: true });
        }
      });
      res.on("error", (e) => (hang ? resolve({ tokens: 0, hung: true }) : reject(e)));
      res.on("end", () => {
        try {
          if (res.statusCode === 503) return resolve({ tokens: 0, busy: true });
          if (bad) {
            if (res.statusCode >= 400 && res.statusCode < 500) return resolve({ tokens: 0, refused: true });
            throw new Error(`malformed body got HTTP ${res.statusCode}`);
          }
          if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${raw.slice(0, 200)}`);
          const events = raw.split("\n\n").filter((e) => e.length);
          if (events.at(-1) !== "data: [DONE]") throw new Error("stream did not end with data: [DONE]");
          let finish = null, usage = null;
          for (const ev of events.slice(0, -1)) {
            if (!ev.startsWith("data: ")) throw new Error(`bad event ${ev.slice(0, 80)}`);
            const c = JSON.parse(ev.slice(6));
            if (c.error) throw new Error(`error event: ${c.error.message}`);
            if (c.usage) usage = c.usage;
            for (const ch of c.choices) finish = ch.finish_reason ?? finish;
          }
          if (!finish || !usage) throw new Error("stream without finish_reason or usage");
          resolve({ tokens: usage.completion_tokens });
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on("error", (e) => (hang ? resolve({ tokens: 0, hung: true }) : reject(e)));
    req.end(body);
  });
}

const t0 = performance.now();
const end = t0 + Number(seconds) * 1000;
const rss = [];
const sampler = setInterval(() => rss.push([(performance.now() - t0) / 1000, rssKiB()]), 250);
rss.push([0, rssKiB()]);
let ok = 0, tokens = 0, next = 0, hung = 0, busy = 0, refused = 0;
const errors = [];
async function client() {
  while (performance.now() < end) {
    try {
      const r = await request(next++);
      tokens += r.tokens;
      if (r.hung) hung++;
      else if (r.busy) busy++;
      else if (r.refused) refused++;
      else ok++;
    } catch (e) {
      errors.push(String(e.message ?? e));
    }
  }
}
await Promise.all(Array.from({ length: Number(clients) }, client));
const elapsed = (performance.now() - t0) / 1000;
clearInterval(sampler);
rss.push([elapsed, rssKiB()]);
agent.destroy();

// Flat RSS: after the first quarter (threads, arenas and the state cache
// warmed up) the RSS may not grow by more than 8 MiB or 10%.
const warm = rss.find(([t]) => t >= elapsed / 4)?.[1] ?? rss[0][1];
const last = rss.at(-1)[1];
const peak = Math.max(...rss.map(([, v]) => v));
const growth = last - warm;
const flat = growth <= Math.max(8192, warm / 10);
const out = {
  clients: Number(clients), seconds: +elapsed.toFixed(1), requests: ok, errors: errors.length,
  hung_up: hung, busy_503: busy, malformed_4xx: refused,
  requests_per_s: +(ok / elapsed).toFixed(2), tokens, tokens_per_s: +(tokens / elapsed).toFixed(1),
  rss_start_mib: +(rss[0][1] / 1024).toFixed(1), rss_warm_mib: +(warm / 1024).toFixed(1),
  rss_end_mib: +(last / 1024).toFixed(1), rss_peak_mib: +(peak / 1024).toFixed(1), rss_flat: flat,
};
console.log(JSON.stringify(out));
if (errors.length) console.error("errors (first 5):", errors.slice(0, 5));
// LOAD_IGNORE_RSS=1: report the RSS, do not judge it (under ASan, whose
// per-thread caches and quarantine grow with connection churn; its leak
// checker judges the server at exit instead)
process.exit(errors.length === 0 && ok > 0 && (flat || process.env.LOAD_IGNORE_RSS === "1") ? 0 : 1);
