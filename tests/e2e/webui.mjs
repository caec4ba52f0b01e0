// tests/e2e/webui.mjs — the web chat page at / driven in headless Chromium (playwright-core over
// Debian's chromium). argv: TINY_BASE (a slow-streaming random model, no key) KEYED_BASE (stories260K
// with --api-key) KEY EXPECTED_TEXT (JSON: the reply to "Once upon a time" at temperature 0, max_tokens
// 16) SCREENSHOT_PATH PROFILE_DIR. Prints "ok   webui: ..." / "FAIL webui: ..." lines; exits 1 on a failure.
import { chromium } from "playwright-core";

const [tinyBase, keyBase, key, wantJSON, shotPath, profile] = process.argv.slice(2);
const want = JSON.parse(wantJSON);
let fails = 0;
const ok = (s) => console.log("ok   webui: " + s);
const bad = (s) => { console.log("FAIL webui: " + s); fails++; };
const check = (cond, name, detail) => (cond ? ok(name) : bad(name + (detail !== undefined ? ": " + detail : "")));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const T0 = Date.now();

async function cancelledTotal(base) {
  const m = /^sparrow_requests_cancelled_total (\d+)/m.exec(await (await fetch(base + "/metrics")).text());
  return m ? Number(m[1]) : NaN;
}

const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.SPARROW_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1100, height: 800 },
  timeout: 30000,
});
ctx.setDefaultTimeout(15000);
// CSP violations are counted from inside the page too (besides the console errors Chromium logs)
await ctx.addInitScript(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
});

function watch(page, allow) {
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error" && !(allow && allow.test(m.text()))) errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("dialog", (d) => d.accept()); // confirm() on delete
  return errors;
}
const lastReply = (page) => page.evaluate(() => {
  const li = document.querySelector("#messages li.assistant:last-child");
  return li ? li.querySelector(".text").textContent : null;
});
const convTitles = (page) => page.$$eval("#convList .open", (bs) => bs.map((b) => b.textContent));

try {
  /* ------------------------------------------------ the streaming model, no key ---- */
  const page = ctx.pages()[0] || (await ctx.newPage());
  const errors = watch(page, /status of 400/); // the refused request below is deliberate
  await page.goto(tinyBase + "/");
  await page.waitForFunction(() => [...document.querySelectorAll("#model option")].some((o) => o.value === "tiny"));
  check(await page.title() === "sparrow", "page loads");
  const opts = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  check(JSON.stringify(opts) === '["tiny"]', "model picker lists the served model", JSON.stringify(opts));
  await page.selectOption("#model", "tiny");

  // the SSE parser, fed a stream split at every point (text and UTF-8 bytes)
  const sse = await page.evaluate(() => {
    const P = window.sparrowTest.SSEParser;
    const stream = 'data: {"a":"héllo 🐦"}\r\n\r\n: keep-alive\n\ndata:x\ndata: y\r\rdata: [DONE]\n\n';
    const want = JSON.stringify(['{"a":"héllo 🐦"}', "x\ny", "[DONE]"]);
    const run = (parts) => { const got = []; const p = new P((d) => got.push(d)); parts.forEach((s) => p.feed(s)); p.end(); return JSON.stringify(got); };
    const bad = [];
    for (let i = 0; i <= stream.length; i++)
      for (let j = i; j <= stream.length; j += 3)
        if (run([stream.slice(0, i), stream.slice(i, j), stream.slice(j)]) !== want) bad.push("text " + i + "," + j);
    const bytes = new TextEncoder().encode(stream);
    for (let i = 0; i <= bytes.length; i++) {
      const dec = new TextDecoder(), got = [], p = new P((d) => got.push(d));
      p.feed(dec.decode(bytes.slice(0, i), { stream: true }));
      p.feed(dec.decode(bytes.slice(i), { stream: true }));
      p.feed(dec.decode()); p.end();
      if (JSON.stringify(got) !== want) bad.push("bytes " + i);
    }
    return bad;
  });
  check(sse.length === 0, "SSE parser: chunks split anywhere (text and UTF-8 bytes, CRLF/CR/LF)", sse.slice(0, 5).join(" "));

  // settings
  await page.click("#settingsBtn");
  await page.fill("#temperature", "1");
  await page.fill("#maxTokens", "8000");
  await page.click("#settingsBtn");

  const cancelledBefore = await cancelledTotal(tinyBase);
  await page.fill("#prompt", "Tell me a story");
  const reqP = page.waitForRequest((r) => r.url().endsWith("/v1/chat/completions"));
  await page.press("#prompt", "Enter");
  const body = (await reqP).postDataJSON();
  check(body.model === "tiny" && body.stream === true && body.max_tokens === 8000 && body.temperature === 1 &&
        body.messages.length === 1 && body.messages[0].content === "Tell me a story",
        "Enter sends: model, stream, temperature and max_tokens from the page", JSON.stringify(body));

  // watch the reply grow
  const lens = new Set();
  const tEnd = Date.now() + 20000;
  while (Date.now() < tEnd) {
    const t = await lastReply(page);
    if (t) lens.add(t.length);
    if (lens.size >= 3) break;
    await sleep(10);
  }
  check(lens.size >= 2, "the streamed reply grows over time", "lengths seen: " + [...lens].join(","));
  const busy = await page.evaluate(() => ({ stop: !document.querySelector("#stop").hidden, send: !document.querySelector("#send").hidden,
                                            aria: document.querySelector("#messages").getAttribute("aria-busy") }));
  check(busy.stop && !busy.send && busy.aria === "true", "Stop shown while streaming (aria-busy)", JSON.stringify(busy));

  await page.click("#stop");
  const tStop = Date.now();
  await sleep(150);
  const atStop = await lastReply(page);
  await sleep(800);
  const later = await lastReply(page);
  const after = await page.evaluate(() => ({ send: !document.querySelector("#send").hidden,
                                             meta: (document.querySelector("#messages li.assistant:last-child .meta") || {}).textContent }));
  check(atStop.length > 0 && later === atStop && after.send && /stopped/.test(after.meta || ""),
        "Stop: the reply stops growing and is marked stopped", `${atStop.length} -> ${later.length}, ${JSON.stringify(after)}`);
  let cancelledAfter = cancelledBefore;
  while (Date.now() - tStop < 10000 && !(cancelledAfter > cancelledBefore)) { await sleep(100); cancelledAfter = await cancelledTotal(tinyBase); }
  check(cancelledAfter === cancelledBefore + 1, "the server cancelled the generation (sparrow_requests_cancelled_total)",
        `${cancelledBefore} -> ${cancelledAfter}`);

  // reload: the conversation (with the partial reply) and the settings are kept
  await page.reload();
  await page.waitForSelector("#messages li.assistant");
  const kept = await page.evaluate(() => ({
    user: document.querySelector("#messages li.user .text").textContent,
    reply: document.querySelector("#messages li.assistant .text").textContent,
    max: document.querySelector("#maxTokens").value, titles: [...document.querySelectorAll("#convList .open")].map((b) => b.textContent),
  }));
  check(kept.user === "Tell me a story" && kept.reply === atStop && kept.max === "8000" &&
        JSON.stringify(kept.titles) === '["Tell me a story"]', "reload keeps the conversation, the partial reply and the settings",
        JSON.stringify({ ...kept, reply: kept.reply.length }));

  // a second conversation, reloaded mid-reply: the part streamed so far is kept (saved as it arrives)
  await page.click("#newChat");
  check((await page.$$("#messages li")).length === 0, "New chat starts empty");
  await page.fill("#prompt", "Another story");
  await page.press("#prompt", "Enter");
  let part = "";
  for (const tEnd2 = Date.now() + 20000; Date.now() < tEnd2 && part.length < 40; await sleep(10)) part = (await lastReply(page)) || "";
  await page.reload();
  await page.waitForSelector("#messages li.assistant");
  const mid = await page.evaluate(() => ({ reply: document.querySelector("#messages li.assistant .text").textContent,
                                           meta: (document.querySelector("#messages li.assistant .meta") || {}).textContent }));
  check(mid.reply.length >= part.length && part.length > 0 && mid.reply.startsWith(part) && /stopped/.test(mid.meta || ""),
        "reload mid-reply keeps the text streamed so far", `${part.length} chars seen, ${mid.reply.length} kept, ${mid.meta}`);
  let cancelled2 = cancelledAfter;
  for (const t = Date.now(); Date.now() - t < 10000 && !(cancelled2 > cancelledAfter); await sleep(100)) cancelled2 = await cancelledTotal(tinyBase);
  check(cancelled2 === cancelledAfter + 1, "leaving the page cancels the generation on the server", `${cancelledAfter} -> ${cancelled2}`);

  // a third conversation whose request the server refuses: its OpenAI error is shown
  await page.click("#newChat");
  await page.click("#settingsBtn");
  await page.fill("#maxTokens", "100000");
  await page.click("#settingsBtn");
  await page.fill("#prompt", "hi");
  await page.click("#send");
  const err = await (await page.waitForSelector("#messages li.assistant .err")).textContent();
  check(/400/.test(err) && /context_length_exceeded/.test(err) && /maximum context length/.test(err),
        "a server error (OpenAI error JSON) is shown", err);
  let titles = await convTitles(page);
  check(JSON.stringify(titles) === '["hi","Another story","Tell me a story"]', "three conversations listed", JSON.stringify(titles));

  // switch back, then delete the others
  await page.click('#convList .open >> text="Tell me a story"');
  check(await lastReply(page) === atStop, "switching conversations shows the first one again");
  await page.click('#convList button[aria-label="Delete chat: hi"]');
  await page.click('#convList button[aria-label="Delete chat: Another story"]');
  titles = await convTitles(page);
  check(JSON.stringify(titles) === '["Tell me a story"]', "deleting a conversation", JSON.stringify(titles));
  await page.reload();
  await page.waitForSelector("#messages li.assistant");
  titles = await convTitles(page);
  check(JSON.stringify(titles) === '["Tell me a story"]' && await lastReply(page) === atStop, "the deletion is kept after reload");

  const csp1 = await page.evaluate(() => window.__csp);
  check(errors.length === 0 && csp1.length === 0, "no console errors or CSP violations", JSON.stringify([...errors, ...csp1]));
  await page.close();

  /* --------------------------------------- stories260K behind --api-key, phone width ---- */
  const p2 = await ctx.newPage();
  await p2.setViewportSize({ width: 390, height: 844 });
  const errors2 = watch(p2, /status of 401/); // the 401s that make the page ask for the key are expected
  await p2.goto(keyBase + "/");
  await p2.waitForSelector("#keyDialog[open]");
  ok("the page asks for the API key on a 401");
  await p2.fill("#keyInput", "sk-wrong");
  await p2.press("#keyInput", "Enter");
  await p2.waitForSelector("#keyError:not([hidden])");
  const kerr = await p2.textContent("#keyError");
  check(/refused/.test(kerr) && await p2.$("#keyDialog[open]") !== null, "a wrong key is refused and asked again", kerr);
  await p2.fill("#keyInput", key);
  await p2.click('#keyForm button[type="submit"]');
  await p2.waitForFunction(() => [...document.querySelectorAll("#model option")].some((o) => o.value === "stories260K"));
  const stored = await p2.evaluate(() => localStorage.getItem("sparrow.apiKey"));
  check(stored === key && await p2.$("#keyDialog[open]") === null, "the key is stored and the models load", stored);

  await p2.click("#settingsBtn");
  await p2.fill("#temperature", "0");
  await p2.fill("#maxTokens", "16");
  await p2.click("#settingsBtn");
  // the first chat call gets a 401 (as if the server's key changed): the page asks again, then retries
  let refused = 0;
  await p2.route("**/v1/chat/completions", async (route) => {
    refused++;
    await route.fulfill({ status: 401, contentType: "application/json",
                          body: '{"error":{"message":"invalid or missing API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}' });
  }, { times: 1 });
  await p2.fill("#prompt", "Once upon a time");
  await p2.press("#prompt", "Enter");
  await p2.waitForSelector("#keyDialog[open]");
  check(refused === 1, "a 401 from the chat call brings the key prompt back");
  await p2.fill("#keyInput", key);
  const req2P = p2.waitForRequest((r) => r.url().endsWith("/v1/chat/completions"));
  await p2.press("#keyInput", "Enter");
  const req2 = await req2P;
  check(req2.headers()["authorization"] === "Bearer " + key && req2.postDataJSON().messages.length === 1,
        "the request is retried with Authorization: Bearer KEY", JSON.stringify(req2.postDataJSON().messages));
  await p2.waitForFunction(() => document.querySelector("#stop").hidden && document.querySelector("#messages li.assistant:last-child .meta"));
  const reply = await lastReply(p2);
  check(reply === want, "the reply equals POST /v1/chat/completions for the same request (temperature 0, 16 tokens)",
        JSON.stringify(reply) + " vs " + JSON.stringify(want));

  // a phone: no sideways scrolling at 360 px, 44 px tap targets, the drawer opens and closes
  await p2.setViewportSize({ width: 360, height: 740 });
  const lay = await p2.evaluate(() => {
    const hgt = (s) => document.querySelector(s).getBoundingClientRect().height;
    return { sw: document.documentElement.scrollWidth, send: hgt("#send"), menu: hgt("#menuBtn"), model: hgt("#model"),
             prompt: hgt("#prompt"), sidebarVisible: getComputedStyle(document.querySelector("#sidebar")).visibility };
  });
  check(lay.sw <= 360 && lay.send >= 44 && lay.menu >= 44 && lay.model >= 44 && lay.prompt >= 44 && lay.sidebarVisible === "hidden",
        "360 px wide: no horizontal scroll, 44 px tap targets, sidebar folded away", JSON.stringify(lay));
  await p2.click("#menuBtn");
  await p2.waitForFunction(() => getComputedStyle(document.querySelector("#sidebar")).visibility === "visible");
  const drawer = await convTitles(p2);
  await p2.keyboard.press("Escape");
  await p2.waitForFunction(() => !document.querySelector("#sidebar").classList.contains("open"));
  check(JSON.stringify(drawer) === '["Once upon a time"]', "the conversation drawer opens (menu) and closes (Escape)", JSON.stringify(drawer));

  await p2.setViewportSize({ width: 390, height: 844 });
  await p2.focus("#prompt");
  await sleep(300);
  await p2.screenshot({ path: shotPath });
  ok("phone screenshot (390x844) saved");

  await p2.reload();
  await p2.waitForSelector("#messages li.assistant");
  await sleep(300);
  check(await p2.$("#keyDialog[open]") === null && await lastReply(p2) === want, "reload: the key and the conversation are kept");
  const csp2 = await p2.evaluate(() => window.__csp);
  check(errors2.length === 0 && csp2.length === 0, "no console errors or CSP violations (keyed server)", JSON.stringify([...errors2, ...csp2]));
} catch (e) {
  bad("unexpected: " + (e && e.stack ? e.stack.split("\n").slice(0, 4).join(" | ") : e));
} finally {
  await ctx.close().catch(() => {});
}
console.log(`webui: ${((Date.now() - T0) / 1000).toFixed(1)} s in the browser`);
process.exit(fails ? 1 : 0);
