// The official openai package against rgemma serve: models, chat (plain and
// streamed), completions, a multi-turn chat that continues from the server's
// saved state, and errors surfacing as the package's error classes.
// usage: node openai_client.mjs BASE_URL   (e.g. http://127.0.0.1:8080/v1)
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused", maxRetries: 0, timeout: 60_000 });

const models = await client.models.list();
const model = models.data[0].id;
assert.equal(models.data.length, 1);

const messages = [{ role: "system", content: "Answer briefly." }, { role: "user", content: "Name a colour." }];
const plain = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
assert.equal(plain.object, "chat.completion");
const reply = plain.choices[0].message;
assert.equal(reply.role, "assistant");
assert.equal(typeof reply.content, "string");
assert.ok(["stop", "length"].includes(plain.choices[0].finish_reason));
assert.ok(plain.usage.completion_tokens > 0 && plain.usage.completion_tokens <= 12);

// streamed: the same text (greedy), usage in the last chunk
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    text += c.delta?.content ?? "";
    finish = c.finish_reason ?? finish;
  }
}
assert.equal(text, reply.content, "streamed text differs from the plain answer");
assert.equal(finish, plain.choices[0].finish_reason);
assert.equal(usage.completion_tokens, plain.usage.completion_tokens);
assert.ok(chunks >= 3);

// completions
const comp = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
assert.equal(comp.object, "text_completion");
assert.equal(typeof comp.choices[0].text, "string");

// three turns: each continues from the state the server kept
const convo = [...messages, reply];
let cachedBefore = plain.usage.prompt_tokens;
for (const question of ["Another one?", "And a third?"]) {
  convo.push({ role: "user", content: question });
  const r = await client.chat.completions.create({ model, messages: convo, max_tokens: 12, temperature: 0 });
  const cached = r.usage.prompt_tokens_details.cached_tokens;
  assert.ok(cached > cachedBefore, `turn reused ${cached} cached tokens, expected more than ${cachedBefore}`);
  cachedBefore = r.usage.prompt_tokens;
  convo.push(r.choices[0].message);
}

// errors come back as the package's typed errors
await assert.rejects(
  client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 4 }),
  (e) => e instanceof OpenAI.NotFoundError && e.code === "model_not_found",
);
await assert.rejects(
  client.chat.completions.create({ model, messages, max_tokens: -5 }),
  (e) => e instanceof OpenAI.BadRequestError && e.param === "max_tokens",
);
await assert.rejects(
  client.chat.completions.create({ model, messages: [], max_tokens: 4 }),
  (e) => e instanceof OpenAI.BadRequestError && /messages/.test(e.message),
);
const pkg = JSON.parse(readFileSync(new URL("./node_modules/openai/package.json", import.meta.url)));
console.log(`openai ${pkg.version}: models, chat, stream (${chunks} chunks), completions, 3 turns, errors: ok`);
