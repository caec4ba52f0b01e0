// tests/e2e/openai_sdk.mjs — the official OpenAI Node SDK against `sparrow serve`, unmodified:
// models.list, chat and completions, streaming and not. argv: BASE_URL API_KEY EXPECTED_TEXT
import OpenAI from "openai";
import assert from "node:assert/strict";

const [base, key, want] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0 });
const ok = (name) => console.log("ok   sdk: " + name);

const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.deepEqual(models, ["stories260K"]);
ok("models.list");

const c = await client.completions.create({ model: "stories260K", prompt: "Once upon a time", max_tokens: 64, temperature: 0 });
assert.equal(c.choices[0].text, want);
assert.equal(c.usage.completion_tokens, 64);
ok("completions.create");

let text = "";
const cs = await client.completions.create({ model: "stories260K", prompt: "Once upon a time", max_tokens: 64, temperature: 0, stream: true });
for await (const chunk of cs) text += chunk.choices[0]?.text ?? "";
assert.equal(text, want);
ok("completions.create stream");

const msgs = [{ role: "system", content: "Tell a story." }, { role: "user", content: "Once upon a time" }];
const chat = await client.chat.completions.create({ model: "stories260K", messages: msgs, max_tokens: 16, temperature: 0 });
assert.equal(chat.choices[0].message.role, "assistant");
assert.ok(chat.choices[0].message.content.length > 0);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
ok("chat.completions.create");

let streamed = "", role = null, finish = null, usage = null;
const st = await client.chat.completions.create({ model: "stories260K", messages: msgs, max_tokens: 16, temperature: 0,
                                                 stream: true, stream_options: { include_usage: true } });
for await (const chunk of st) {
  if (chunk.usage) usage = chunk.usage;
  const ch = chunk.choices[0];
  if (!ch) continue;
  role = role ?? ch.delta.role;
  streamed += ch.delta.content ?? "";
  finish = ch.finish_reason ?? finish;
}
assert.equal(role, "assistant");
assert.equal(streamed, chat.choices[0].message.content);
assert.ok(finish === "stop" || finish === "length");
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);
ok("chat.completions.create stream");

try {
  await client.chat.completions.create({ model: "no-such-model", messages: msgs });
  assert.fail("unknown model accepted");
} catch (e) {
  assert.equal(e.status, 404);
  assert.equal(e.code, "model_not_found");
  ok("errors surface as APIError (404 model_not_found)");
}
