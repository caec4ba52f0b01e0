// sparrow chat page: streams replies from POST /v1/chat/completions (SSE over fetch), keeps
// conversations in localStorage, asks for the API key on a 401. No dependencies, no innerHTML with
// model or user text (everything goes through textContent / Text nodes), no inline styles.
"use strict";
(() => {
  const LS_CONVS = "sparrow.conversations", LS_SETTINGS = "sparrow.settings", LS_KEY = "sparrow.apiKey";
  const $ = (id) => document.getElementById(id);
  const ui = {
    sidebar: $("sidebar"), scrim: $("scrim"), menuBtn: $("menuBtn"), convList: $("convList"),
    newChat: $("newChat"), newChatTop: $("newChatTop"), model: $("model"), settingsBtn: $("settingsBtn"),
    settings: $("settings"), temperature: $("temperature"), maxTokens: $("maxTokens"), system: $("system"),
    keyState: $("keyState"), changeKey: $("changeKey"), forgetKey: $("forgetKey"), banner: $("banner"),
    bannerText: $("bannerText"), bannerRetry: $("bannerRetry"), chat: $("chat"), empty: $("empty"),
    messages: $("messages"), composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
    status: $("status"), keyDialog: $("keyDialog"), keyForm: $("keyForm"), keyInput: $("keyInput"),
    keyError: $("keyError"), keyCancel: $("keyCancel"),
  };

  /* ------------------------------------------------------------ SSE ---- */

  // Server-sent events parser: feed() it decoded text split anywhere (mid-line, mid-"\r\n"); it calls
  // onData(payload) once per complete event with its data lines joined by "\n".
  class SSEParser {
    constructor(onData) { this.onData = onData; this.buf = ""; this.data = []; this.has = false; this.cr = false; }
    feed(text) {
      if (!text) return;
      if (this.cr && text[0] === "\n") text = text.slice(1); // the "\n" of a "\r\n" split across chunks
      this.cr = false;
      const b = this.buf + text;
      let start = 0;
      for (let i = 0; i < b.length; i++) {
        const c = b.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        const line = b.slice(start, i);
        if (c === 13) {
          if (i + 1 < b.length) { if (b.charCodeAt(i + 1) === 10) i++; }
          else this.cr = true;
        }
        start = i + 1;
        this.line(line);
      }
      this.buf = b.slice(start);
    }
    end() { if (this.buf) this.line(this.buf); this.buf = ""; this.line(""); }
    line(l) {
      if (l === "") {
        if (this.has) { const d = this.data.join("\n"); this.data = []; this.has = false; this.onData(d); }
        return;
      }
      if (l[0] === ":") return; // comment / keep-alive
      const k = l.indexOf(":");
      const field = k < 0 ? l : l.slice(0, k);
      let value = k < 0 ? "" : l.slice(k + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "data") { this.data.push(value); this.has = true; }
    }
  }

  /* ------------------------------------------------------------ API ---- */

  class ApiError extends Error {
    constructor(status, message, code, retryAfter) {
      super(message);
      this.name = "ApiError"; this.status = status; this.code = code || null; this.retryAfter = retryAfter || null;
    }
  }

  let apiKey = lsGet(LS_KEY) || "";

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }

  // An OpenAI-shaped error body {"error": {"message", "type", "code"}} -> ApiError; anything else too.
  async function errorFrom(res) {
    let msg = res.statusText || "request failed", code = null;
    try {
      const text = await res.text();
      try {
        const j = JSON.parse(text);
        if (j && j.error) { msg = j.error.message || msg; code = j.error.code || j.error.type || null; }
      } catch { if (text.trim()) msg = text.trim().slice(0, 300); }
    } catch { /* body unreadable: keep the status text */ }
    return new ApiError(res.status, msg, code, res.headers.get("Retry-After"));
  }

  function describe(e) {
    if (e instanceof ApiError) {
      let s = (e.status ? "Error " + e.status : "Error") + (e.code ? " (" + e.code + ")" : "") + ": " + e.message;
      if (e.retryAfter) s += " — retry in " + e.retryAfter + " s";
      return s;
    }
    if (e && e.name === "TypeError") return "Cannot reach the server (" + e.message + ")";
    return "Error: " + (e && e.message ? e.message : String(e));
  }

  /* ---------------------------------------------------------- storage ---- */

  function lsGet(k) { try { return localStorage.getItem(k); } catch { return null; } }
  function lsSet(k, v) {
    try { localStorage.setItem(k, v); return true; } catch (e) {
      showBanner("Could not save in this browser (" + (e && e.name === "QuotaExceededError"
        ? "storage is full: delete some conversations" : e.message) + ").");
      return false;
    }
  }
  function lsDel(k) { try { localStorage.removeItem(k); } catch { /* ignore */ } }

  const settings = Object.assign({ model: "", temperature: "0.8", maxTokens: "", system: "" },
                                 parseJSON(lsGet(LS_SETTINGS)) || {});
  function saveSettings() { lsSet(LS_SETTINGS, JSON.stringify(settings)); }

  // { convs: [{id, title, created, updated, messages: [{role, content, model?, stopped?, error?, meta?, pending?}]}],
  //   current: id }
  let store = loadStore();
  function loadStore() {
    const s = parseJSON(lsGet(LS_CONVS));
    const out = { convs: [], current: null };
    if (s && Array.isArray(s.convs)) {
      for (const c of s.convs) {
        if (!c || typeof c.id !== "string" || !Array.isArray(c.messages)) continue;
        c.messages = c.messages.filter((m) => m && typeof m.content === "string" && typeof m.role === "string");
        for (const m of c.messages) if (m.pending) { delete m.pending; m.stopped = true; } // page closed mid-reply
        out.convs.push(c);
      }
      out.current = s.current;
    }
    return out;
  }
  let saveTimer = 0;
  function save() {
    clearTimeout(saveTimer); saveTimer = 0;
    lsSet(LS_CONVS, JSON.stringify(store));
  }
  function saveSoon() { if (!saveTimer) saveTimer = setTimeout(save, 250); }
  function parseJSON(s) { try { return s ? JSON.parse(s) : null; } catch { return null; } }

  function currentConv() { return store.convs.find((c) => c.id === store.current) || null; }
  function newConv() {
    const c = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 8), title: "New chat",
                created: Date.now(), updated: Date.now(), messages: [] };
    store.convs.unshift(c);
    store.current = c.id;
    return c;
  }

  /* --------------------------------------------------------------- UI ---- */

  function h(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }

  let bannerAction = null;
  function showBanner(text, actionLabel, action) {
    ui.bannerText.textContent = text;
    bannerAction = action || null;
    ui.bannerRetry.hidden = !action;
    if (action) ui.bannerRetry.textContent = actionLabel || "Retry";
    ui.banner.hidden = false;
  }
  function hideBanner() { ui.banner.hidden = true; bannerAction = null; }
  function announce(text) { ui.status.textContent = ""; setTimeout(() => { ui.status.textContent = text; }, 50); }

  function renderConvs() {
    const items = store.convs.map((c) => {
      const cur = c.id === store.current;
      return h("li", { class: "conv" + (cur ? " current" : "") },
        h("button", { type: "button", class: "open", text: c.title || "New chat", title: c.title || "New chat",
                      "aria-current": cur ? "true" : false, onclick: () => switchConv(c.id) }),
        h("button", { type: "button", class: "icon-btn del", "aria-label": "Delete chat: " + (c.title || "New chat"),
                      title: "Delete chat", onclick: () => deleteConv(c.id) }, xIcon()));
    });
    ui.convList.replaceChildren(...items);
  }
  function xIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg"), p = document.createElementNS(ns, "path");
    svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("aria-hidden", "true");
    p.setAttribute("d", "M6 6l12 12M18 6L6 18");
    svg.append(p);
    return svg;
  }

  const views = new WeakMap(); // message -> {li, text (Text node), extra (div)}
  function msgView(m, isLast) {
    const text = document.createTextNode(m.content);
    const li = h("li", { class: "msg " + (m.role === "user" ? "user" : "assistant") + (m.pending ? " streaming" : "") },
      h("span", { class: "who", text: m.role === "user" ? "You" : "Assistant" + (m.model ? " · " + m.model : "") }),
      h("div", { class: "text" }, text));
    const extra = h("div", { class: "extra" });
    li.append(extra);
    const v = { li, text, extra };
    views.set(m, v);
    fillExtra(m, v, isLast);
    return li;
  }
  function fillExtra(m, v, isLast) {
    const parts = [];
    if (m.error) parts.push(h("div", { class: "err", role: "alert", text: m.error }));
    const meta = [m.stopped ? "stopped" : "", m.meta || ""].filter(Boolean).join(" · ");
    if (meta) parts.push(h("div", { class: "meta", text: meta }));
    if (isLast && m.role === "assistant" && !m.pending && (m.error || m.stopped))
      parts.push(h("div", { class: "actions" }, h("button", { type: "button", class: "btn", text: "Retry",
                                                            onclick: () => retry() })));
    v.extra.replaceChildren(...parts);
    v.li.classList.toggle("streaming", !!m.pending);
    v.li.classList.toggle("no-text", !m.pending && m.content === ""); // failed or stopped before any text
  }

  // (on touch screens focusing the box would pop up the keyboard unasked)
  function focusPrompt() { if (matchMedia("(pointer: fine)").matches) ui.prompt.focus(); }
  function nearBottom() { const c = ui.chat; return c.scrollHeight - c.scrollTop - c.clientHeight < 80; }
  function toBottom() { ui.chat.scrollTop = ui.chat.scrollHeight; }

  function renderMessages() {
    const conv = currentConv();
    const msgs = conv ? conv.messages : [];
    ui.messages.replaceChildren(...msgs.map((m, i) => msgView(m, i === msgs.length - 1)));
    ui.empty.hidden = msgs.length > 0;
    toBottom();
  }
  function render() { renderConvs(); renderMessages(); }

  function switchConv(id) {
    if (store.current !== id) { store.current = id; save(); render(); }
    closeDrawer();
    focusPrompt();
  }
  function deleteConv(id) {
    const c = store.convs.find((x) => x.id === id);
    if (!c || !confirm("Delete the chat “" + (c.title || "New chat") + "”?")) return;
    if (active && active.conv === c) active.controller.abort();
    store.convs = store.convs.filter((x) => x !== c);
    if (store.current === id) store.current = store.convs.length ? store.convs[0].id : null;
    save(); render();
    announce("Chat deleted");
  }
  function startNewChat() {
    const cur = currentConv();
    if (!cur || cur.messages.length) newConv(); // an empty chat is reused
    save(); render(); closeDrawer();
    focusPrompt();
  }

  /* drawer (phones) and settings */
  function openDrawer() {
    ui.sidebar.classList.add("open"); ui.scrim.hidden = false; ui.menuBtn.setAttribute("aria-expanded", "true");
    const first = ui.convList.querySelector(".current .open") || ui.newChat;
    first.focus();
  }
  function closeDrawer() {
    if (!ui.sidebar.classList.contains("open")) return;
    ui.sidebar.classList.remove("open"); ui.scrim.hidden = true; ui.menuBtn.setAttribute("aria-expanded", "false");
  }
  function toggleSettings(show) {
    const open = show === undefined ? ui.settings.hidden : show;
    ui.settings.hidden = !open;
    ui.settingsBtn.setAttribute("aria-expanded", String(open));
  }
  function showKeyState() {
    ui.keyState.textContent = apiKey ? "saved in this browser" : "none";
    ui.changeKey.textContent = apiKey ? "Change key" : "Set key";
    ui.forgetKey.hidden = !apiKey;
  }

  /* ------------------------------------------------------------ models ---- */

  let models = [];
  async function loadModels() {
    try {
      const res = await fetch("/v1/models", { headers: headers(false), cache: "no-store" });
      if (res.status === 401) { askKey(null); return false; }
      if (!res.ok) throw await errorFrom(res);
      const j = await res.json();
      models = (Array.isArray(j.data) ? j.data : []).map((m) => String(m.id));
      if (!models.includes(settings.model)) settings.model = models[0] || "";
      ui.model.replaceChildren(...(models.length ? models.map((id) => h("option", { value: id, text: id }))
                                                : [h("option", { value: "", text: "no models" })]));
      ui.model.value = settings.model;
      ui.model.disabled = !models.length;
      saveSettings();
      if (bannerAction === loadModels) hideBanner();
      return true;
    } catch (e) {
      ui.model.replaceChildren(h("option", { value: "", text: "models unavailable" }));
      showBanner("Could not load the model list. " + describe(e), "Retry", loadModels);
      return false;
    }
  }

  /* ----------------------------------------------------------- API key ---- */

  let keyRetry = null; // what to run once a key is saved (the chat request that got the 401)
  function askKey(retryFn) {
    if (retryFn) keyRetry = retryFn;
    ui.keyError.hidden = !apiKey;
    ui.keyError.textContent = apiKey ? "The server refused this key. Enter another one." : "";
    ui.keyInput.value = "";
    if (!ui.keyDialog.open) ui.keyDialog.showModal();
    ui.keyInput.focus();
  }
  async function onKeySubmit(ev) {
    ev.preventDefault();
    const k = ui.keyInput.value.trim();
    if (!k) return;
    apiKey = k;
    lsSet(LS_KEY, k);
    showKeyState();
    ui.keyDialog.close();
    hideBanner();
    if (await loadModels() && keyRetry) { const r = keyRetry; keyRetry = null; r(); }
  }
  function onKeyCancel() {
    ui.keyDialog.close();
    keyRetry = null;
    showBanner("This server needs an API key.", "Enter key", () => askKey(null));
  }

  /* -------------------------------------------------------------- chat ---- */

  let active = null; // {conv, msg, controller} while a reply streams
  let leaving = false; // the page is being unloaded (its request fails with it)

  function setBusy(busy) {
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.messages.setAttribute("aria-busy", String(busy));
  }

  function sendFromBox() {
    const text = ui.prompt.value.trim();
    if (!text || active) return;
    const conv = currentConv() || newConv();
    conv.messages.push({ role: "user", content: text });
    if (!conv.title || conv.title === "New chat") conv.title = text.replace(/\s+/g, " ").slice(0, 60);
    ui.prompt.value = "";
    autosize();
    hideBanner();
    generate(conv);
  }

  function retry() {
    const conv = currentConv();
    if (!conv || active) return;
    const last = conv.messages[conv.messages.length - 1];
    if (last && last.role === "assistant") conv.messages.pop();
    generate(conv);
  }

  function requestBody(conv) {
    const msgs = conv.messages.filter((m) => m.content !== "").map((m) => ({ role: m.role, content: m.content }));
    if (settings.system.trim()) msgs.unshift({ role: "system", content: settings.system });
    const body = { messages: msgs, stream: true, stream_options: { include_usage: true } };
    if (settings.model) body.model = settings.model;
    const t = parseFloat(settings.temperature);
    if (Number.isFinite(t)) body.temperature = t;
    const n = parseInt(settings.maxTokens, 10);
    if (Number.isFinite(n) && n > 0) body.max_tokens = n;
    return body;
  }

  async function generate(conv) {
    const body = requestBody(conv);
    const msg = { role: "assistant", content: "", model: settings.model, pending: true };
    conv.messages.push(msg);
    conv.updated = Date.now();
    // the chat being answered goes to the top of the list
    store.convs = [conv, ...store.convs.filter((c) => c !== conv)];
    save();
    render();
    const controller = new AbortController();
    active = { conv, msg, controller };
    setBusy(true);
    let tFirst = 0, nDeltas = 0, usage = null, finish = null, done = false, got401 = false;
    const append = (d) => {
      msg.content += d;
      const v = views.get(msg);
      if (v && v.li.isConnected) {
        const stick = nearBottom();
        v.text.appendData(d);
        if (stick) toBottom();
      }
      saveSoon();
    };
    try {
      const res = await fetch("/v1/chat/completions", { method: "POST", headers: headers(true),
                                                        body: JSON.stringify(body), signal: controller.signal });
      if (!res.ok) throw await errorFrom(res);
      const parser = new SSEParser((data) => {
        if (done) return;
        if (data === "[DONE]") { done = true; return; }
        let j;
        try { j = JSON.parse(data); } catch { throw new Error("unreadable data from the server: " + data.slice(0, 120)); }
        if (j.error) throw new ApiError(0, j.error.message || "generation failed", j.error.code || j.error.type);
        if (j.usage) usage = j.usage;
        const ch = Array.isArray(j.choices) ? j.choices[0] : null;
        if (!ch) return;
        const d = ch.delta && typeof ch.delta.content === "string" ? ch.delta.content : "";
        if (d) { if (!tFirst) tFirst = performance.now(); nDeltas++; append(d); }
        if (ch.finish_reason) finish = ch.finish_reason;
      });
      const reader = res.body.getReader(), dec = new TextDecoder();
      for (;;) {
        const { value, done: eof } = await reader.read();
        if (eof) { parser.feed(dec.decode()); parser.end(); break; }
        parser.feed(dec.decode(value, { stream: true }));
      }
      if (!done) throw new Error("the connection closed before the reply finished");
      const n = usage ? usage.completion_tokens : nDeltas, secs = (performance.now() - tFirst) / 1000;
      msg.meta = n + " token" + (n === 1 ? "" : "s") + (finish === "length" ? " (max tokens reached)" : "") +
                 (n > 1 && tFirst && secs > 0 ? " · " + ((n - 1) / secs).toFixed(1) + " tokens/s" : "");
      announce("Reply finished");
    } catch (e) {
      if ((e && e.name === "AbortError") || leaving) {
        msg.stopped = true;
        announce("Stopped");
      } else if (e instanceof ApiError && e.status === 401) {
        got401 = true;
      } else {
        msg.error = describe(e);
        announce(msg.error);
      }
    } finally {
      delete msg.pending;
      active = null;
      setBusy(false);
      if (got401) {
        conv.messages = conv.messages.filter((m) => m !== msg);
        askKey(() => { if (store.convs.includes(conv)) { store.current = conv.id; generate(conv); } });
      }
      save();
      if (conv === currentConv()) {
        const v = views.get(msg), msgs = conv.messages;
        if (got401) renderMessages();
        else if (v && v.li.isConnected) {
          const stick = nearBottom();
          fillExtra(msg, v, msgs[msgs.length - 1] === msg);
          if (stick) toBottom();
        }
      }
    }
  }

  function autosize() {
    if (CSS.supports("field-sizing", "content")) return;
    const p = ui.prompt;
    p.style.height = "auto";
    p.style.height = Math.min(p.scrollHeight + 2, window.innerHeight * 0.4) + "px";
  }

  /* ------------------------------------------------------------ wiring ---- */

  ui.composer.addEventListener("submit", (e) => { e.preventDefault(); sendFromBox(); });
  ui.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
      e.preventDefault();
      sendFromBox();
    }
  });
  ui.prompt.addEventListener("input", autosize);
  ui.stop.addEventListener("click", () => { if (active) active.controller.abort(); focusPrompt(); });
  ui.newChat.addEventListener("click", startNewChat);
  ui.newChatTop.addEventListener("click", startNewChat);
  ui.menuBtn.addEventListener("click", () => (ui.sidebar.classList.contains("open") ? closeDrawer() : openDrawer()));
  ui.scrim.addEventListener("click", closeDrawer);
  ui.settingsBtn.addEventListener("click", () => toggleSettings());
  ui.bannerRetry.addEventListener("click", () => { const a = bannerAction; hideBanner(); if (a) a(); });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || ui.keyDialog.open) return;
    if (ui.sidebar.classList.contains("open")) { closeDrawer(); ui.menuBtn.focus(); }
    else if (!ui.settings.hidden) { toggleSettings(false); ui.settingsBtn.focus(); }
  });

  ui.model.addEventListener("change", () => { settings.model = ui.model.value; saveSettings(); });
  const bindSetting = (input, key) => {
    input.value = settings[key];
    input.addEventListener("input", () => { settings[key] = input.value; saveSettings(); });
  };
  bindSetting(ui.temperature, "temperature");
  bindSetting(ui.maxTokens, "maxTokens");
  bindSetting(ui.system, "system");

  ui.keyForm.addEventListener("submit", onKeySubmit);
  ui.keyCancel.addEventListener("click", onKeyCancel);
  ui.keyDialog.addEventListener("cancel", (e) => { e.preventDefault(); onKeyCancel(); });
  ui.changeKey.addEventListener("click", () => { ui.keyError.hidden = true; askKeyFresh(); });
  ui.forgetKey.addEventListener("click", () => {
    apiKey = ""; lsDel(LS_KEY); showKeyState(); announce("API key forgotten"); loadModels();
  });
  function askKeyFresh() {
    ui.keyInput.value = "";
    ui.keyError.hidden = true;
    if (!ui.keyDialog.open) ui.keyDialog.showModal();
    ui.keyInput.focus();
  }

  // another tab changed the conversations: follow it (unless this one is streaming)
  window.addEventListener("storage", (e) => {
    if (e.key === LS_CONVS && !active) { store = loadStore(); render(); }
    if (e.key === LS_KEY) { apiKey = e.newValue || ""; showKeyState(); }
  });
  // leaving the page (reload, close) ends the request: the reply so far is kept, marked stopped
  window.addEventListener("pagehide", () => {
    leaving = true;
    if (active) { delete active.msg.pending; active.msg.stopped = true; }
    if (saveTimer || active) save();
  });
  window.addEventListener("pageshow", (e) => { if (e.persisted) leaving = false; });

  if (!currentConv()) store.current = store.convs.length ? store.convs[0].id : null;
  showKeyState();
  render();
  loadModels();
  focusPrompt();

  // for tests/e2e/webui.mjs (the SSE parser checked against every split point)
  window.sparrowTest = { SSEParser };
})();
