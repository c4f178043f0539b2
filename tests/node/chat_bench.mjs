// A 10-turn chat against rgemma serve (node's fetch only): each turn sends the
// whole conversation so far, as OpenAI clients do, and records what the server
// reports: prompt tokens, how many came from the state cache, prompt time
// (time to the first token) and the turn's wall time.
// usage: node chat_bench.mjs BASE_URL [TURNS] [REPLY_TOKENS]
// Prints one JSON line per turn, then a JSON summary line.
const [base, turns = "10", replyTokens = "16"] = process.argv.slice(2);
const questions = [
  "Tell me about rivers that flow north and the towns along them.",
  "Which of those towns is the oldest, and why was it built there?",
  "What did people trade there in the middle ages?",
  "How did the railway change that trade?",
  "Describe the main square of the town as it looks today.",
  "What festivals are held in that square each year?",
  "Which local dishes would I find at those festivals?",
  "Give me a recipe for the most famous of those dishes.",
  "What wine or drink goes well with it?",
  "Summarise our whole conversation in three sentences.",
];
const messages = [{ role: "system", content: "You are a helpful travel guide. Answer in a few sentences." }];
const rows = [];
const t0 = performance.now();
for (let k = 0; k < Number(turns); k++) {
  messages.push({ role: "user", content: questions[k % questions.length] });
  const t = performance.now();
  const res = await fetch(new URL("/v1/chat/completions", base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: Number(replyTokens), temperature: 0, ignore_eos: true }),
  });
  const r = await res.json();
  if (!res.ok) throw new Error(`turn ${k + 1}: HTTP ${res.status} ${JSON.stringify(r)}`);
  messages.push(r.choices[0].message);
  const row = {
    turn: k + 1, prompt_tokens: r.usage.prompt_tokens, cached: r.usage.prompt_tokens_details.cached_tokens,
    processed: r.timings.prompt_n, prompt_ms: +r.timings.prompt_ms.toFixed(1),
    reply_tokens: r.usage.completion_tokens, turn_ms: +(performance.now() - t).toFixed(1),
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
const sum = (f) => rows.reduce((a, r) => a + r[f], 0);
console.log(JSON.stringify({
  turns: rows.length, prompt_tokens: sum("prompt_tokens"), processed: sum("processed"), cached: sum("cached"),
  prompt_s: +(sum("prompt_ms") / 1000).toFixed(2), total_s: +((performance.now() - t0) / 1000).toFixed(2),
  last_turn_prompt_ms: rows.at(-1).prompt_ms,
}));
