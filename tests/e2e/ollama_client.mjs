// tests/e2e/ollama_client.mjs — the official Ollama JS client (npm `ollama`) against sparrow's
// Ollama API, unmodified: list, chat and generate, streaming and not. argv: HOST EXPECTED_TEXT
import { Ollama } from "ollama";
import assert from "node:assert/strict";

const [host, want8] = process.argv.slice(2);
const ollama = new Ollama({ host });
const ok = (name) => console.log("ok   ollama: " + name);

const list = await ollama.list();
assert.equal(list.models.length, 1);
assert.equal(list.models[0].name, "stories260K:latest");
assert.equal(list.models[0].details.family, "llama");
ok("list");

const g = await ollama.generate({ model: "stories260K", prompt: "Once upon a time", raw: true, stream: false,
                                  options: { temperature: 0, num_predict: 8 } });
assert.equal(g.response, want8);
assert.equal(g.done, true);
assert.equal(g.eval_count, 8);
assert.ok(g.total_duration > 0 && g.eval_duration >= 0);
ok("generate");

let text = "", last = null;
for await (const part of await ollama.generate({ model: "stories260K:latest", prompt: "Once upon a time", raw: true,
                                                 stream: true, options: { temperature: 0, num_predict: 8 } })) {
  text += part.response;
  last = part;
}
assert.equal(text, want8);
assert.equal(last.done, true);
assert.equal(last.done_reason, "length");
ok("generate stream");

const msgs = [{ role: "user", content: "Once upon a time" }];
const c = await ollama.chat({ model: "stories260K", messages: msgs, stream: false, options: { temperature: 0, num_predict: 12 } });
assert.equal(c.message.role, "assistant");
assert.ok(c.message.content.length > 0);
assert.equal(c.eval_count, 12);
ok("chat");

let streamed = "", final = null;
for await (const part of await ollama.chat({ model: "stories260K", messages: msgs, stream: true,
                                             options: { temperature: 0, num_predict: 12 } })) {
  streamed += part.message.content;
  if (part.done) final = part;
}
assert.equal(streamed, c.message.content);
assert.equal(final.eval_count, 12);
ok("chat stream");

const show = await ollama.show({ model: "stories260K" });
assert.equal(show.details.format, "gguf");
ok("show");

const ps = await ollama.ps();
assert.equal(ps.models[0].name, "stories260K:latest");
ok("ps");

await assert.rejects(ollama.chat({ model: "no-such-model", messages: msgs }), (e) => e.status_code === 404);
ok("unknown model -> 404 ResponseError");
