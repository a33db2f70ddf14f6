// brook's web page, the installation's console: the broker at a glance
// (from /metrics); devices with their readings as charts, latest data, Live
// Inspector (server-sent events), tokens, tags, parameters and parser; the
// actions with their locks (and Unlock) and run records; the bridges. Every
// change goes through the admin API the CLI uses, and an error shows the
// API's message. Plain DOM, no framework, no build step. Everything from the
// server (names, topics, payloads, values, units, errors) is shown with
// textContent, never parsed as HTML.
//
// Links: #device=NAME[&tab=inspector|tokens|settings], #actions[=NAME], and
// #token=… beside either (read into session storage, then dropped from the
// address bar).
"use strict";

/** Where the admin token is kept: this tab's session only. */
const TOKEN_KEY = "brook.admin_token";
/** How often the device list (connected, last input) is asked for again. */
const DEVICES_EVERY_MS = 5000;
/** How often the latest data and charts are asked for again while a device is open. */
const DATA_EVERY_MS = 10000;
/** How often /metrics is read for the numbers at the top. */
const METRICS_EVERY_MS = 2000;
/** How often the action list (and the open run history) is asked for again. */
const ACTIONS_EVERY_MS = 5000;
/** Rows the inspector keeps; older ones are dropped from the bottom. */
const MAX_EVENTS = 300;
/** Data items in the latest-data table. */
const DATA_QTY = 20;
/** Wait before reopening a live stream the server closed. */
const RETRY_MS = 5000;
/** Runs per page of an action's history. */
const RUNS_PAGE = 20;
/** Variables per chart request: 20 × 288 buckets stays under the server's 10 000. */
const CHART_BATCH = 20;
/** Soonest the charts are asked for again after the last time. */
const CHART_SPACING_MS = 400;
/**
 * The range picker. `interval` is the bucket width asked for: about 240 to
 * 290 points per chart whatever the range, and the same buckets from one
 * request to the next, so that a live update asks only for the last one.
 */
const RANGES = {
  "1h": { ms: 3600e3, start: "1 hour", interval: "15s", widthMs: 15e3, label: "1 h" },
  "24h": { ms: 86400e3, start: "24 hours", interval: "5m", widthMs: 300e3, label: "24 h" },
  "7d": { ms: 7 * 86400e3, start: "7 days", interval: "1h", widthMs: 3600e3, label: "7 days" },
  "30d": { ms: 30 * 86400e3, start: "30 days", interval: "3h", widthMs: 3 * 3600e3, label: "30 days" },
};
const TABS = ["overview", "inspector", "tokens", "settings"];

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

const state = {
  token: null,
  view: null, // "devices" | "actions"
  selected: null, // device name
  tab: "overview",
  device: null, // GET /devices/{name} of the selected device
  source: null, // the EventSource of the selected device
  rows: new Map(), // device name -> its list button
  names: new Map(), // device id -> name, for run records
  timers: [],
  dataSoon: null,
  paused: false,
  missed: 0,
  skewMs: 0, // server clock minus ours, from the Date header
  range: "24h",
  charts: {
    variables: [], // GET /devices/{name}/variables
    series: new Map(), // variable -> buckets, oldest first
    running: false,
    again: false,
    timer: null,
    lastRun: 0,
    cards: new Map(), // variable -> its figure
    full: true, // the next request asks for the whole range
    timerAt: 0, // when the pending request is due (performance.now())
  },
  metrics: null, // the previous /metrics sample: {at, values}
  actions: { list: [], buttons: new Map(), selected: null, runs: [], before: null, locksKey: null },
};

// ---- small helpers -------------------------------------------------------

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
const now = () => Date.now() + state.skewMs;

function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.round((now() - new Date(iso)) / 1000);
  if (isNaN(s)) return "";
  if (s < 5) return "just now";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function show(text) {
  if (typeof text === "string") return text;
  return JSON.stringify(text);
}

/** Shows `text` in a status line; `ok` false marks it as an error. */
function say(id, text, ok = true) {
  const e = $(id);
  e.textContent = text || "";
  e.classList.toggle("error", !ok);
  e.classList.toggle("ok", ok && !!text);
}

/** The API's own message of a failed answer. */
function failure(r) {
  return (r.body && r.body.message) || `HTTP ${r.status}`;
}

/** An admin API request; resolves to {status, body}. A 401 logs out. */
async function api(path, method = "GET", payload) {
  const init = {
    method,
    headers: { Authorization: `Bearer ${state.token}` },
    cache: "no-store",
  };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    return { status: 0, body: { message: "cannot reach brook" }, ok: false };
  }
  const date = Date.parse(r.headers.get("Date"));
  if (!isNaN(date)) state.skewMs = date + 500 - Date.now(); // Date has whole seconds
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    /* not JSON: a proxy's page, or an endpoint this brook lacks */
  }
  if (r.status === 401) {
    logout("The admin token was refused.");
  }
  return { status: r.status, body, ok: r.status >= 200 && r.status < 300 && body && body.status === true };
}

/** Tags from "k=v, k2=v2"; throws a message when one has no "=". */
function parseTags(text) {
  const tags = [];
  for (const part of text.split(",")) {
    const t = part.trim();
    if (!t) continue;
    const at = t.indexOf("=");
    if (at <= 0) throw new Error(`tags: ${JSON.stringify(t)} is not KEY=VALUE`);
    tags.push({ key: t.slice(0, at).trim(), value: t.slice(at + 1).trim() });
  }
  return tags;
}

const tagsText = (tags) => (tags || []).map((t) => `${t.key}=${t.value}`).join(", ");

/** A token shown once, in `host`, with a copy button. */
function showSecret(host, title, secret) {
  const box = el("div", "secret");
  box.append(el("p", "", title), el("p", "muted", "Copy it now: brook shows it only this once."));
  const row = el("div", "copy-row");
  const input = el("input", "token-value");
  input.readOnly = true;
  input.value = secret;
  input.spellcheck = false;
  input.addEventListener("focus", () => input.select());
  const copy = el("button", "", "Copy");
  copy.type = "button";
  copy.addEventListener("click", async () => {
    let done = false;
    try {
      await navigator.clipboard.writeText(secret);
      done = true;
    } catch (_) {
      // Not a secure context (plain http on another host): the old way.
      input.select();
      done = document.execCommand("copy");
    }
    copy.textContent = done ? "Copied" : "Select and copy it";
  });
  const dismiss = el("button", "", "Done");
  dismiss.type = "button";
  dismiss.addEventListener("click", () => box.remove());
  row.append(input, copy, dismiss);
  box.append(row);
  host.replaceChildren(box);
}

/** A button that asks once more before `act` runs (no browser dialog). */
function confirmButton(label, confirmLabel, act) {
  const b = el("button", "", label);
  b.type = "button";
  let armed = null;
  b.addEventListener("click", () => {
    if (!armed) {
      b.textContent = confirmLabel;
      b.classList.add("bad");
      armed = setTimeout(() => {
        armed = null;
        b.textContent = label;
        b.classList.remove("bad");
      }, 5000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.disabled = true;
    act();
  });
  return b;
}

// ---- links ---------------------------------------------------------------

/** The fragment as a map: `#device=x&tab=y` → {device: x, tab: y}; `#actions` → {actions: ""}. */
function readHash() {
  const out = new Map();
  for (const part of location.hash.replace(/^#/, "").split("&")) {
    if (!part) continue;
    const at = part.indexOf("=");
    const key = decodeURIComponent(at < 0 ? part : part.slice(0, at));
    out.set(key, at < 0 ? "" : decodeURIComponent(part.slice(at + 1)));
  }
  return out;
}

function hashOf(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === false) continue;
    parts.push(v === "" ? enc(k) : `${enc(k)}=${enc(v)}`);
  }
  return parts.length ? `#${parts.join("&")}` : "";
}

/** Goes to a place: sets the fragment (a history entry) and shows it. */
function go(params) {
  const h = hashOf(params);
  if (h === location.hash || (h === "" && location.hash === "")) route();
  else location.hash = h;
}

/** Shows what the fragment names. */
function route() {
  if (!state.token) return;
  const h = readHash();
  if (h.has("actions")) {
    showView("actions");
    selectAction(h.get("actions") || null);
    return;
  }
  showView("devices");
  const device = h.get("device");
  if (device) select(device, TABS.includes(h.get("tab")) ? h.get("tab") : "overview");
  else deselect();
}

function showView(view) {
  if (state.view === view) return;
  state.view = view;
  $("devices-view").hidden = view !== "devices";
  $("actions-view").hidden = view !== "actions";
  $("nav-devices").classList.toggle("current", view === "devices");
  $("nav-actions").classList.toggle("current", view === "actions");
  if (view === "actions") loadActions();
}

// ---- token ---------------------------------------------------------------

/** The token from `#token=…` (then removed from the address bar) or the session. */
function readToken() {
  const h = readHash();
  if (h.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, h.get("token"));
    h.delete("token");
    history.replaceState(null, "", location.pathname + location.search + hashOf(Object.fromEntries(h)));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.timers.forEach(clearInterval);
  state.timers = [];
  closeLive();
  state.selected = null;
  state.view = null;
  state.rows.clear();
  $("devices").replaceChildren();
  state.actions.buttons.clear();
  state.actions.selected = null;
  $("actions").replaceChildren();
  $("runs-detail").hidden = true;
  $("runs-choose").hidden = false;
  $("detail").hidden = true;
  $("choose").hidden = false;
  $("devices-view").hidden = true;
  $("actions-view").hidden = true;
  $("nav").hidden = true;
  $("glance").hidden = true;
  $("logout").hidden = true;
  $("conn").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token-input").focus();
}

async function login(token) {
  state.token = token;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("glance").hidden = false;
  $("logout").hidden = false;
  await loadDevices();
  if (!state.token) return; // refused
  route();
  loadMetrics();
  loadBridges();
  state.timers.push(setInterval(loadDevices, DEVICES_EVERY_MS));
  state.timers.push(setInterval(loadMetrics, METRICS_EVERY_MS));
  state.timers.push(
    setInterval(() => {
      if (state.view !== "devices" || !state.selected) return;
      loadData();
      chartsSoon(0);
    }, DATA_EVERY_MS),
  );
  state.timers.push(
    setInterval(() => {
      if (state.view !== "actions") return;
      loadActions();
      loadBridges();
    }, ACTIONS_EVERY_MS),
  );
}

// ---- the broker at a glance ----------------------------------------------

/** Prometheus text → {"name{labels}": value}. */
function parseMetrics(text) {
  const values = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    const v = Number(line.slice(at + 1));
    if (at > 0 && isFinite(v)) values[line.slice(0, at)] = v;
  }
  return values;
}

async function loadMetrics() {
  let values;
  try {
    const r = await fetch("/metrics", {
      headers: { Authorization: `Bearer ${state.token}` },
      cache: "no-store",
    });
    if (!r.ok) return;
    values = parseMetrics(await r.text());
  } catch (_) {
    return;
  }
  const at = performance.now();
  const prev = state.metrics;
  state.metrics = { at, values };
  const set = (id, text) => {
    $(id).textContent = text;
  };
  set("m-connected", String(values.brook_clients_connected ?? "–"));
  const rate = (name) => {
    if (!prev || !(name in values) || !(name in prev.values)) return "–";
    const per = ((values[name] - prev.values[name]) * 1000) / Math.max(1, at - prev.at);
    return per < 10 ? per.toFixed(1) : String(Math.round(per));
  };
  set("m-in", rate("brook_messages_received_total"));
  set("m-out", rate("brook_messages_sent_total"));
  set("m-stored", rate("brook_data_items_stored_total"));
  const reasons = Object.entries(values)
    .filter(([k]) => k.startsWith("brook_messages_dropped_total{"))
    .map(([k, v]) => [k.replace(/^.*reason="([^"]*)".*$/, "$1"), v]);
  const total = reasons.reduce((s, [, v]) => s + v, 0);
  const dropped = $("m-dropped");
  dropped.textContent = String(total);
  const nonzero = reasons.filter(([, v]) => v > 0);
  if (nonzero.length) {
    const small = el("small", "", ` (${nonzero.map(([r, v]) => `${r.replace(/_/g, " ")} ${v}`).join(", ")})`);
    dropped.append(small);
  }
  dropped.title = reasons.map(([r, v]) => `${r}: ${v}`).join("\n");
  dropped.classList.toggle("error", total > 0);
}

// ---- devices -------------------------------------------------------------

async function loadDevices() {
  const r = await api("/devices");
  if (!state.token) return;
  if (r.status !== 200 || !r.body || !Array.isArray(r.body.result)) {
    $("conn").textContent = `devices: ${failure(r)}`;
    return;
  }
  $("conn").textContent = `updated ${clock(new Date().toISOString()).slice(0, 8)}`;
  renderDevices(r.body.result);
}

/** Updates the list in place, so that a row being clicked stays the same element. */
function renderDevices(devices) {
  const list = $("devices");
  const seen = new Set();
  devices.forEach((d, i) => {
    seen.add(d.name);
    state.names.set(d.id, d.name);
    let b = state.rows.get(d.name);
    if (!b) {
      b = el("button", "device");
      b.type = "button";
      b.dataset.device = d.name;
      b.append(el("span", "dot"), el("span", "name", d.name), el("span", "meta"));
      b.addEventListener("click", () => go({ device: d.name }));
      const li = el("li");
      li.append(b);
      state.rows.set(d.name, b);
    }
    const li = b.parentElement;
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    b.classList.toggle("online", !!d.connected);
    b.setAttribute("aria-pressed", String(d.name === state.selected));
    b.querySelector(".dot").title = d.connected ? "connected" : "not connected";
    b.querySelector(".meta").textContent =
      `${d.connected ? "connected" : "offline"} · last input ${ago(d.last_input)}`;
    b.title = d.last_input ? `last input ${when(d.last_input)}` : "no input yet";
    if (d.name === state.selected) {
      $("detail-status").textContent = `${d.connected ? "connected" : "offline"} · last input ${ago(d.last_input)}`;
    }
  });
  for (const [name, b] of state.rows) {
    if (!seen.has(name)) {
      b.parentElement.remove();
      state.rows.delete(name);
    }
  }
  $("device-count").textContent = devices.length ? `(${devices.length})` : "";
  $("devices-empty").hidden = devices.length > 0;
}

function deselect() {
  closeLive();
  state.selected = null;
  state.device = null;
  for (const b of state.rows.values()) b.setAttribute("aria-pressed", "false");
  $("detail").hidden = true;
  $("detail-missing").hidden = true;
  $("choose").hidden = false;
  $("nav-devices").href = "#";
}

function select(name, tab) {
  if (state.selected !== name) {
    state.selected = name;
    state.device = null;
    for (const [n, b] of state.rows) b.setAttribute("aria-pressed", String(n === name));
    $("choose").hidden = true;
    $("detail-missing").hidden = true;
    $("detail").hidden = false;
    $("detail-name").textContent = name;
    $("detail-status").textContent = "";
    $("detail-tags").replaceChildren();
    $("events").replaceChildren();
    state.missed = 0;
    countEvents();
    $("data").querySelector("tbody").replaceChildren();
    $("data-empty").hidden = true;
    $("data-status").textContent = "";
    $("token-new").replaceChildren();
    for (const id of ["tokens-status", "tags-status", "params-status", "parser-status", "delete-status", "add-token-error"]) say(id, "");
    $("delete-confirm").value = "";
    $("delete-device").disabled = true;
    resetCharts();
    openLive();
    loadDevice();
    loadData();
    chartsSoon(0, true);
    if (window.matchMedia("(max-width: 50rem)").matches) {
      $("detail").scrollIntoView({ behavior: "smooth" });
    }
  }
  showTab(tab);
}

function showTab(tab) {
  state.tab = tab;
  $("nav-devices").href = hashOf({ device: state.selected });
  for (const t of TABS) $(`tab-${t}`).hidden = t !== tab;
  for (const a of $("tabs").querySelectorAll("a")) {
    a.classList.toggle("current", a.dataset.tab === tab);
    a.href = hashOf({ device: state.selected, tab: a.dataset.tab === "overview" ? null : a.dataset.tab });
  }
  if (tab === "overview") renderCharts(); // sizes are known only once visible
}

/** The selected device's record: tags, tokens, params, parser. */
async function loadDevice() {
  const name = state.selected;
  let r;
  try {
    r = await api(`/devices/${enc(name)}`);
  } catch (_) {
    return;
  }
  if (name !== state.selected) return;
  if (r.status === 404) {
    closeLive();
    $("detail").hidden = true;
    $("detail-missing").hidden = false;
    $("detail-missing").textContent = `No device named ${JSON.stringify(name)}.`;
    return;
  }
  if (!r.ok) {
    $("detail-status").textContent = failure(r);
    return;
  }
  const d = r.body.result;
  state.device = d;
  state.names.set(d.id, d.name);
  $("detail-status").textContent = `${d.connected ? "connected" : "offline"} · last input ${ago(d.last_input)}`;
  const tags = $("detail-tags");
  tags.replaceChildren(...(d.tags || []).map((t) => el("span", "tag", `${t.key}=${t.value}`)));
  renderTokens(d.tokens || []);
  $("tags-input").value = tagsText(d.tags);
  renderParams(d.params || []);
  const lines = d.parser_source ? d.parser_source.split("\n").length : 0;
  $("parser-state").textContent = d.parser_source
    ? `This device's payloads go through a parser (${lines} line${lines === 1 ? "" : "s"}) before they are stored.`
    : "No parser: payloads are stored as they come.";
  $("parser-source-box").hidden = !d.parser_source;
  $("parser-source").textContent = d.parser_source || "";
  $("parser-remove").disabled = !d.parser_source;
}

async function createDevice(ev) {
  ev.preventDefault();
  say("add-device-error", "");
  const name = $("new-name").value.trim();
  const body = { name };
  try {
    body.tags = parseTags($("new-tags").value);
  } catch (e) {
    say("add-device-error", e.message, false);
    return;
  }
  const file = $("new-parser").files[0];
  if (file) body.parser = await file.text();
  const r = await api("/devices", "POST", body);
  if (!r.ok) {
    say("add-device-error", failure(r), false);
    return;
  }
  $("add-device").reset();
  $("add-device").hidden = true;
  showSecret($("device-token"), `Device ${name} was created. Its token:`, r.body.result.token);
  $("device-token").querySelector("input").id = "new-token";
  await loadDevices();
  go({ device: name });
}

// ---- tokens --------------------------------------------------------------

function renderTokens(tokens) {
  const list = $("tokens");
  list.replaceChildren();
  if (!tokens.length) list.append(el("li", "muted", "No tokens: the device cannot log in."));
  for (const t of tokens) {
    const li = el("li", "token");
    li.dataset.tokenId = t.id;
    li.dataset.last4 = t.last4;
    const expired = t.expires_at && Date.parse(t.expires_at) < now();
    li.append(
      el("code", "last4", `…${t.last4}`),
      el("span", "name", t.name),
      el("span", `perm perm-${t.permission}`, t.permission),
      el("span", "muted", `id ${t.id}`),
      el("span", "muted", `made ${when(t.created_at)}`),
      el("span", expired ? "error" : "muted", t.expires_at ? `${expired ? "expired" : "expires"} ${when(t.expires_at)}` : "never expires"),
    );
    const revoke = confirmButton("Revoke", `Revoke …${t.last4}?`, () => revokeToken(t));
    revoke.classList.add("revoke");
    li.append(revoke);
    list.append(li);
  }
}

async function revokeToken(t) {
  const r = await api(`/tokens/${enc(t.id)}`, "DELETE");
  if (r.ok) say("tokens-status", `Token …${t.last4} revoked; connections that used it are closed.`);
  else say("tokens-status", failure(r), false);
  loadDevice();
}

async function addToken(ev) {
  ev.preventDefault();
  say("add-token-error", "");
  const body = { permission: $("token-permission").value };
  const name = $("token-name").value.trim();
  const expires = $("token-expires").value.trim();
  if (name) body.name = name;
  if (expires) body.expires = expires;
  const r = await api(`/devices/${enc(state.selected)}/tokens`, "POST", body);
  if (!r.ok) {
    say("add-token-error", failure(r), false);
    return;
  }
  $("add-token").reset();
  const t = r.body.result;
  showSecret($("token-new"), `New ${t.permission} token ${t.name} (…${t.last4}):`, t.token);
  loadDevice();
}

// ---- settings: tags, parameters, parser, delete ---------------------------

/** PATCH /devices/{name}; shows the outcome in the status line `status`. */
async function patchDevice(patch, status, done) {
  const r = await api(`/devices/${enc(state.selected)}`, "PATCH", patch);
  if (r.ok) say(status, done);
  else say(status, failure(r), false);
  await loadDevice();
}

async function saveTags(ev) {
  ev.preventDefault();
  let tags;
  try {
    tags = parseTags($("tags-input").value);
  } catch (e) {
    say("tags-status", e.message, false);
    return;
  }
  await patchDevice({ tags }, "tags-status", "Tags saved.");
}

function paramRow(p) {
  const li = el("li", "param");
  li.dataset.id = p.id || "";
  li.dataset.value = p.value || "";
  li.dataset.sent = String(!!p.sent);
  const key = el("input", "param-key");
  key.value = p.key || "";
  key.placeholder = "key";
  key.setAttribute("aria-label", "key");
  const value = el("input", "param-value");
  value.value = p.value || "";
  value.placeholder = "value";
  value.setAttribute("aria-label", "value");
  const sent = el("span", "muted", p.id ? (p.sent ? "sent" : "not sent") : "new");
  const remove = el("button", "", "Remove");
  remove.type = "button";
  remove.addEventListener("click", () => li.remove());
  li.append(key, value, sent, remove);
  return li;
}

function renderParams(params) {
  $("params").replaceChildren(...params.map(paramRow));
}

async function saveParams(ev) {
  ev.preventDefault();
  const params = [];
  for (const li of $("params").children) {
    const key = li.querySelector(".param-key").value.trim();
    const value = li.querySelector(".param-value").value;
    if (!key) continue;
    // A changed value is news to the device: unsent again.
    const sent = li.dataset.sent === "true" && li.dataset.value === value;
    params.push({ id: li.dataset.id, key, value, sent });
  }
  await patchDevice({ params }, "params-status", `${params.length} parameter${params.length === 1 ? "" : "s"} saved.`);
}

async function uploadParser(ev) {
  ev.preventDefault();
  const file = $("parser-file").files[0];
  if (!file) {
    say("parser-status", "Choose a .js file first.", false);
    return;
  }
  await patchDevice({ parser: await file.text() }, "parser-status", `Parser ${file.name} uploaded.`);
  $("parser-form").reset();
}

async function deleteDevice(ev) {
  ev.preventDefault();
  const name = state.selected;
  if ($("delete-confirm").value !== name) return;
  const r = await api(`/devices/${enc(name)}`, "DELETE");
  if (!r.ok) {
    say("delete-status", failure(r), false);
    return;
  }
  await loadDevices();
  go({});
}

// ---- latest data ---------------------------------------------------------

async function loadData() {
  const name = state.selected;
  let r;
  try {
    r = await api(`/devices/${enc(name)}/data?qty=${DATA_QTY}`);
  } catch (e) {
    return;
  }
  if (name !== state.selected) return; // another device was chosen meanwhile
  const body = $("data").querySelector("tbody");
  const items = r.status === 200 && r.body && Array.isArray(r.body.result) ? r.body.result : null;
  $("data-status").textContent = r.status !== 200 && r.status !== 404 ? failure(r) : "";
  body.replaceChildren();
  $("data").hidden = !items || items.length === 0;
  $("data-empty").hidden = !$("data").hidden;
  for (const d of items || []) {
    const tr = el("tr");
    tr.append(
      el("td", "var", d.variable),
      el("td", "value", d.value === undefined ? "" : show(d.value)),
      el("td", "unit", d.unit || ""),
      el("td", "time", when(d.time)),
    );
    body.append(tr);
  }
}

/** New data is likely (a publish, a parser run): ask again shortly, once. */
function dataSoon() {
  clearTimeout(state.dataSoon);
  state.dataSoon = setTimeout(() => state.selected && loadData(), 1000);
}

// ---- charts --------------------------------------------------------------

function resetCharts() {
  const c = state.charts;
  c.variables = [];
  c.series = new Map();
  c.cards = new Map();
  c.full = true;
  $("charts").replaceChildren();
  $("charts-empty").hidden = true;
  $("charts-status").textContent = "";
  for (const b of $("ranges").children) b.setAttribute("aria-pressed", String(b.dataset.range === state.range));
}

/**
 * Asks for the charts' data in `delay` ms: `full` for the whole range (a
 * new device or range), otherwise from each chart's last bucket on. Calls
 * coalesce: at most one request runs, and one more is queued behind it.
 */
function chartsSoon(delay, full = false) {
  const c = state.charts;
  if (full) c.full = true;
  if (c.running) {
    c.again = true;
    return;
  }
  const wait = Math.max(delay, c.lastRun + CHART_SPACING_MS - performance.now());
  if (c.timer && c.timerAt <= performance.now() + wait) return;
  clearTimeout(c.timer);
  c.timerAt = performance.now() + wait;
  c.timer = setTimeout(runCharts, wait);
}

async function runCharts() {
  const c = state.charts;
  c.timer = null;
  c.running = true;
  c.lastRun = performance.now();
  try {
    await loadCharts();
  } catch (e) {
    $("charts-status").textContent = "cannot reach brook";
  }
  c.running = false;
  if (c.again) {
    c.again = false;
    chartsSoon(0);
  }
}

async function loadCharts() {
  const c = state.charts;
  const name = state.selected;
  const rangeKey = state.range;
  const range = RANGES[rangeKey];
  if (!name) return;
  const stale = () => name !== state.selected || rangeKey !== state.range;
  const r = await api(`/devices/${enc(name)}/variables`);
  if (stale()) return;
  if (!r.ok) {
    if (r.status !== 404) $("charts-status").textContent = failure(r);
    return;
  }
  const variables = r.body.result;
  const numeric = variables.filter((v) => typeof v.value === "number").map((v) => v.variable);
  const known = new Set(c.series.keys());
  const full = c.full || numeric.some((v) => !known.has(v));
  c.full = false;
  const cutoff = now() - range.ms;
  for (let i = 0; i < numeric.length; i += CHART_BATCH) {
    const batch = numeric.slice(i, i + CHART_BATCH);
    let start = range.start;
    if (!full) {
      // From the oldest of the batch's last buckets on: they may have grown.
      const lasts = batch.map((v) => {
        const b = c.series.get(v) || [];
        return b.length ? Date.parse(b[b.length - 1].time) : cutoff;
      });
      start = new Date(Math.max(cutoff, Math.min(...lasts))).toISOString();
    }
    const qs = batch.map((v) => `variable=${enc(v)}`).join("&");
    const b = await api(`/devices/${enc(name)}/data?${qs}&start_date=${enc(start)}&interval=${range.interval}`);
    if (stale()) return;
    if (!b.ok) {
      $("charts-status").textContent = failure(b);
      return;
    }
    const fresh = new Map(batch.map((v) => [v, []]));
    for (const bucket of b.body.result) fresh.get(bucket.variable)?.push(bucket);
    for (const [v, got] of fresh) {
      if (full) {
        c.series.set(v, got);
        continue;
      }
      // Replace what the answer covers, keep the rest, drop what left the range.
      const from = got.length ? Date.parse(got[0].time) : Infinity;
      const kept = (c.series.get(v) || []).filter((x) => Date.parse(x.time) < from);
      c.series.set(v, kept.concat(got));
    }
  }
  for (const [v, buckets] of c.series) {
    if (!numeric.includes(v)) c.series.delete(v);
    else c.series.set(v, buckets.filter((x) => Date.parse(x.time) + range.widthMs > cutoff));
  }
  c.variables = variables;
  $("charts-status").textContent = "";
  renderCharts();
}

/** Draws every variable's card: the chart for numbers, the latest value for the rest. */
function renderCharts() {
  const c = state.charts;
  if (state.tab !== "overview" || $("tab-overview").hidden) return;
  const host = $("charts");
  const range = RANGES[state.range];
  const end = now();
  const start = end - range.ms;
  $("charts-empty").hidden = c.variables.length > 0;
  const seen = new Set();
  const phone = window.matchMedia("(max-width: 50rem)").matches;
  // Charts first, then the variables that are not numbers, each by name.
  const numericFirst = c.variables
    .slice()
    .sort((a, b) => (typeof b.value === "number") - (typeof a.value === "number"));
  numericFirst.forEach((item, i) => {
    const v = item.variable;
    seen.add(v);
    const numeric = typeof item.value === "number";
    let card = c.cards.get(v);
    if (!card || card.dataset.numeric !== String(numeric)) {
      if (card) card.remove();
      card = el("figure", "chart");
      card.dataset.variable = v;
      card.dataset.numeric = String(numeric);
      const cap = el("figcaption");
      const latest = el("span", "latest");
      latest.append(el("span", "latest-value"), el("span", "latest-unit"));
      cap.append(el("span", "var", v), latest, el("span", "stats muted"));
      card.append(cap);
      if (numeric) card.append(el("div", "plot"));
      c.cards.set(v, card);
    }
    if (host.children[i] !== card) host.insertBefore(card, host.children[i] || null);
    const unit = item.unit || "";
    card.querySelector(".latest-value").textContent = numeric ? BrookChart.formatValue(item.value) : show(item.value ?? "");
    card.querySelector(".latest-unit").textContent = unit ? ` ${unit}` : "";
    card.querySelector(".latest").title = `latest: ${when(item.time)}`;
    const stats = card.querySelector(".stats");
    if (!numeric) {
      stats.textContent = `latest, ${ago(item.time)}`;
      return;
    }
    const buckets = c.series.get(v) || [];
    if (buckets.length) {
      const lo = Math.min(...buckets.map((b) => b.min));
      const hi = Math.max(...buckets.map((b) => b.max));
      const u = unit ? ` ${unit}` : "";
      stats.textContent = `min ${BrookChart.formatValue(lo)}${u} · max ${BrookChart.formatValue(hi)}${u} over ${range.label} · latest ${ago(item.time)}`;
    } else {
      stats.textContent = `none in the last ${range.label} · latest ${ago(item.time)}`;
    }
    BrookChart.draw(card.querySelector(".plot"), {
      buckets,
      start,
      end,
      widthMs: range.widthMs,
      unit,
      label: v,
      height: phone ? 160 : 190,
    });
  });
  for (const [v, card] of c.cards) {
    if (!seen.has(v)) {
      card.remove();
      c.cards.delete(v);
    }
  }
}

// ---- Live Inspector ------------------------------------------------------

function closeLive() {
  if (state.source) state.source.close();
  state.source = null;
}

function openLive() {
  closeLive();
  const name = state.selected;
  const url = `/devices/${enc(name)}/live?token=${enc(state.token)}`;
  const source = new EventSource(url);
  state.source = source;
  setLive("connecting…");
  source.onopen = () => setLive("live");
  source.onmessage = (m) => {
    let event;
    try {
      event = JSON.parse(m.data);
    } catch (_) {
      return;
    }
    addEvent(event);
  };
  source.onerror = () => {
    if (state.source !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // Refused (token, device deleted) or the server went away: try again later.
      setLive("closed; retrying");
      setTimeout(() => state.source === source && state.selected === name && openLive(), RETRY_MS);
    } else {
      setLive("reconnecting…");
    }
  };
}

function setLive(text) {
  $("live-status").textContent = text;
  $("live-status").dataset.state = text;
}

function countEvents() {
  const n = $("events").children.length;
  const missed = state.missed ? ` · ${state.missed} missed while paused` : "";
  $("event-count").textContent = `${n} event${n === 1 ? "" : "s"}${missed}`;
}

/** The fields each event type shows besides its type, time and client id. */
function details(e) {
  const d = el("div", "detail");
  const field = (label, value) => {
    if (value === undefined || value === null || value === "") return;
    const span = el("span", "field");
    span.append(el("span", "label", label), document.createTextNode(" " + show(value)));
    d.append(span);
  };
  switch (e.type) {
    case "watching":
      field("watching", e.device);
      break;
    case "connect":
      field("token", e.token);
      field("peer", e.peer);
      field("transport", e.transport);
      field("via proxy", e.proxy);
      field("clean session", e.clean_session);
      field("keep alive", e.keep_alive === undefined ? undefined : `${e.keep_alive} s`);
      field("will", e.will_topic);
      if (e.resumed) field("session", "resumed");
      break;
    case "disconnect":
      field("reason", e.reason);
      break;
    case "subscribe":
      for (const f of e.filters || []) {
        field(f.granted === false ? "refused" : `q${f.qos}`, f.filter);
      }
      break;
    case "unsubscribe":
      for (const f of e.filters || []) field("filter", f);
      break;
    case "publish":
      d.append(el("span", "topic", e.topic));
      field("direction", e.direction); // a bridge's pseudo-device: in or out
      field("remote topic", e.remote_topic);
      field("qos", e.qos);
      if (e.retain) field("retain", true);
      field("bytes", e.bytes);
      d.append(el("pre", "payload", e.payload === undefined ? "" : show(e.payload)));
      break;
    default: {
      // refused, parser, action and anything newer: every other field.
      for (const [k, v] of Object.entries(e)) {
        if (k === "type" || k === "time" || k === "client_id") continue;
        if (typeof v === "string" && (v.length > 60 || v.includes("\n"))) {
          d.append(el("span", "label", k), el("pre", "payload", v));
        } else {
          field(k, v);
        }
      }
    }
  }
  return d;
}

function addEvent(e) {
  // Stored data shows in the charts whether or not the inspector is paused:
  // an action's run is after its commit; a publish may still be on its way.
  if (e.type === "action") chartsSoon(0);
  else if (e.type === "publish" || e.type === "parser") chartsSoon(1000);
  if (e.type === "publish" || e.type === "parser" || e.type === "action") dataSoon();
  if (state.paused) {
    state.missed++;
    countEvents();
    return;
  }
  const li = el("li", "event");
  li.dataset.type = e.type;
  const head = el("div", "head");
  head.append(
    el("time", "time", clock(e.time || new Date().toISOString())),
    el("span", `type t-${e.type}`, e.type),
    el("span", "client", e.client_id || ""),
  );
  if (e.time) head.firstChild.dateTime = e.time;
  li.append(head, details(e));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  countEvents();
}

// ---- actions -------------------------------------------------------------

/** `{"mqtt_topic": ["a/#"]}` → "mqtt_topic a/#". */
function triggerText(trigger) {
  if (!trigger || typeof trigger !== "object") return show(trigger ?? "");
  return Object.entries(trigger)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(", ") : show(v)}`)
    .join(" · ");
}

/** `{variable: "t", op: ">", value: 30}` → "t > 30"; a list joined with "and"; else as JSON. */
function conditionText(c) {
  if (Array.isArray(c)) return c.map(conditionText).join(" and ");
  if (!c || typeof c !== "object" || typeof c.variable !== "string" || typeof c.op !== "string") return show(c);
  const known = new Set(["variable", "op", "value", "field"]);
  if (Object.keys(c).some((k) => !known.has(k))) return show(c);
  const value = c.value === undefined ? "" : ` ${JSON.stringify(c.value)}`;
  return `${c.variable} ${c.op}${value}${c.field ? ` (as ${c.field})` : ""}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

function outcomeBadge(outcome) {
  return el("span", `outcome o-${outcome}`, outcome);
}

async function loadActions() {
  const r = await api("/actions");
  if (!r.ok) {
    say("reload-result", `actions: ${failure(r)}`, false);
    return;
  }
  state.actions.list = r.body.result;
  renderActions();
  if (state.actions.selected && state.actions.before === null) loadRuns(false);
}

/** Updates the list in place (like the devices), so that a button being clicked stays. */
function renderActions() {
  const list = $("actions");
  const actions = state.actions.list;
  const buttons = state.actions.buttons;
  $("action-count").textContent = actions.length ? `(${actions.length})` : "";
  $("actions-empty").hidden = actions.length > 0;
  const seen = new Set();
  actions.forEach((a, i) => {
    seen.add(a.name);
    let b = buttons.get(a.name);
    if (!b) {
      b = el("button", "action");
      b.type = "button";
      b.dataset.action = a.name;
      b.addEventListener("click", () => go({ actions: a.name }));
      const li = el("li");
      li.append(b);
      buttons.set(a.name, b);
    }
    const li = b.parentElement;
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    b.setAttribute("aria-pressed", String(a.name === state.actions.selected));
    const head = el("span", "head");
    head.append(el("span", "name", a.name), el("span", "kind", a.type || ""));
    if (!a.enabled) head.append(el("span", "disabled", "disabled"));
    const last = el("span", "last");
    if (a.last_run) {
      last.append(
        outcomeBadge(a.last_run.outcome),
        document.createTextNode(` ${duration(a.last_run.duration_ms)} · ${ago(a.last_run.started_at)}`),
      );
    } else {
      last.append(el("span", "muted", "never ran"));
    }
    const parts = [head, el("span", "trigger", triggerText(a.trigger)), last];
    const locks = a.locks || [];
    if (locks.length) {
      const names = locks.slice(0, 3).map((l) => l.device || l.device_id);
      const more = locks.length > 3 ? ` and ${locks.length - 3} more` : "";
      parts.push(el("span", "locks", `locked for ${names.join(", ")}${more}`));
    }
    parts.push(el("span", "file muted", `${a.file}:${a.line}`));
    b.replaceChildren(...parts);
  });
  for (const [name, b] of buttons) {
    if (!seen.has(name)) {
      b.parentElement.remove();
      buttons.delete(name);
    }
  }
  renderActionFacts();
}

function renderActionFacts() {
  const name = state.actions.selected;
  const a = state.actions.list.find((x) => x.name === name);
  const facts = $("action-def");
  facts.replaceChildren();
  $("action-json").textContent = a ? JSON.stringify(a.definition, null, 2) : "";
  if (!a) {
    facts.append(el("dt", "", "state"), el("dd", "muted", "not loaded now: these are its recorded runs"));
    return;
  }
  const fact = (k, v) => facts.append(el("dt", "", k), el("dd", "", v));
  fact("type", a.type || "");
  fact("trigger", triggerText(a.trigger));
  if (a.definition && a.definition.devices) fact("devices", a.definition.devices.join(", "));
  if (a.definition && a.definition.condition) fact("condition", conditionText(a.definition.condition));
  if (a.definition && a.definition.unlock) fact("unlock", conditionText(a.definition.unlock));
  fact("enabled", a.enabled ? "yes" : "no");
  fact("file", `${a.file}:${a.line}`);
  fact("loaded", when(a.loaded_at));
  renderLocks(a);
}

/**
 * The chosen action's locks, one row per device with an Unlock button.
 * Redrawn only when they change, so that a button being clicked stays.
 */
function renderLocks(a) {
  const locks = (a && a.locks) || [];
  const panel = $("locks-panel");
  panel.hidden = !a || !(a.definition && a.definition.unlock) && !locks.length;
  const key = a ? JSON.stringify([a.name, locks]) : null;
  if (key === state.actions.locksKey) {
    // The same locks: only "how long ago" moves on.
    for (const li of $("locks").children) li.querySelector(".ago").textContent = ago(li.dataset.lockedAt);
    return;
  }
  state.actions.locksKey = key;
  $("locks-empty").hidden = locks.length > 0;
  $("locks").replaceChildren(
    ...locks.map((l) => {
      const li = el("li", "lock");
      const device = l.device || l.device_id;
      li.dataset.device = device;
      li.dataset.lockedAt = l.locked_at;
      const name = el(l.device ? "a" : "span", "device", device);
      if (l.device) name.href = hashOf({ device: l.device });
      const since = el("span", "since");
      since.append(
        document.createTextNode("locked since "),
        el("time", "time", when(l.locked_at)),
        document.createTextNode(" ("),
        el("span", "ago", ago(l.locked_at)),
        document.createTextNode(")"),
      );
      const b = el("button", "unlock", "Unlock");
      b.type = "button";
      b.addEventListener("click", () => unlock(a.name, device, b));
      li.append(name, since, b);
      return li;
    }),
  );
}

/** `POST /actions/{name}/unlock?device=NAME`, then the list again. */
async function unlock(action, device, button) {
  button.disabled = true;
  const r = await api(`/actions/${enc(action)}/unlock?device=${enc(device)}`, "POST");
  if (r.ok) say("locks-status", show(r.body.result));
  else {
    say("locks-status", `${device}: ${failure(r)}`, false);
    button.disabled = false;
  }
  await loadActions();
}

function selectAction(name) {
  const s = state.actions;
  for (const b of $("actions").querySelectorAll("button.action")) {
    b.setAttribute("aria-pressed", String(b.dataset.action === name));
  }
  if (s.selected === name) return;
  s.selected = name;
  s.runs = [];
  s.before = null;
  s.locksKey = null;
  say("locks-status", "");
  $("runs").replaceChildren();
  $("runs-choose").hidden = !!name;
  $("runs-detail").hidden = !name;
  if (!name) return;
  $("runs-name").textContent = name;
  $("runs-empty").hidden = true;
  $("runs-more").hidden = true;
  renderActionFacts();
  loadRuns(false);
  if (window.matchMedia("(max-width: 50rem)").matches) {
    $("runs-detail").scrollIntoView({ behavior: "smooth" });
  }
}

/** The first page of runs (`more` false) or the next older one. */
async function loadRuns(more) {
  const s = state.actions;
  const name = s.selected;
  const before = more && s.runs.length ? `&before=${s.runs[s.runs.length - 1].id}` : "";
  let r;
  try {
    r = await api(`/actions/${enc(name)}/runs?limit=${RUNS_PAGE}${before}`);
  } catch (_) {
    return;
  }
  if (name !== s.selected) return;
  if (!r.ok) {
    $("runs-status").textContent = failure(r);
    return;
  }
  $("runs-status").textContent = "";
  const page = r.body.result;
  if (more) {
    s.runs = s.runs.concat(page);
    s.before = page.length ? page[page.length - 1].id : s.before;
  } else {
    s.runs = page;
  }
  $("runs-more").hidden = page.length < RUNS_PAGE;
  renderRuns();
}

function renderRuns() {
  const list = $("runs");
  list.replaceChildren();
  $("runs-empty").hidden = state.actions.runs.length > 0;
  for (const run of state.actions.runs) {
    const li = el("li", "run");
    li.dataset.outcome = run.outcome;
    li.dataset.runId = run.id;
    const head = el("div", "head");
    head.append(
      outcomeBadge(run.outcome),
      el("time", "time", when(run.started_at)),
      el("span", "muted", duration(run.duration_ms)),
      el("span", "trigger", `${run.trigger.kind} ${run.trigger.detail || ""}`.trim()),
    );
    // insert_bucket runs of one commit are one record with their count.
    if (run.count > 1) head.append(el("span", "muted", `× ${run.count} runs`));
    if (run.device_id) {
      const name = state.names.get(run.device_id);
      const device = el(name ? "a" : "span", "device", name || run.device_id);
      if (name) device.href = hashOf({ device: name });
      head.append(device);
    }
    li.append(head);
    const body = el("div", "detail");
    body.append(el("span", "run-detail", run.detail));
    if (run.exit_code !== null && run.exit_code !== undefined && !run.detail.includes(`exit code ${run.exit_code}`)) {
      body.append(el("span", "muted", `exit code ${run.exit_code}`));
    }
    li.append(body);
    for (const stream of ["stdout", "stderr"]) {
      if (!run[stream]) continue;
      li.append(el("span", "label", stream), el("pre", `output ${stream}`, run[stream]));
    }
    list.append(li);
  }
}

async function reloadActions() {
  const out = $("reload-result");
  out.replaceChildren();
  out.className = "";
  const r = await api("/actions/reload", "POST");
  if (r.ok) {
    out.className = "ok";
    out.textContent = r.body.result;
  } else {
    out.className = "error";
    const problems = (r.body && r.body.problems) || [];
    out.append(el("p", "", problems.length ? "Not reloaded; the previous actions stay:" : failure(r)));
    const ul = el("ul", "problems");
    for (const p of problems) {
      const li = el("li");
      li.append(el("code", "", p));
      ul.append(li);
    }
    if (problems.length) out.append(ul);
  }
  loadActions();
}

// ---- bridges -------------------------------------------------------------
// GET /bridges, shown when it lists at least one: connected or not (since
// when, to which remote), the queue and counters, the last error and the
// next attempt. Fields this page does not know are shown as they come.

/** The fields shown as counters, in this order, with their labels. */
const BRIDGE_COUNTERS = [
  ["queued", "queued"],
  ["inflight", "in flight"],
  ["sent", "sent"],
  ["received", "received"],
  ["dropped", "dropped"],
  ["loops_stopped", "loops stopped"],
  ["failed_attempts", "failed attempts"],
];
/** Fields shown otherwise (or not at all: the retry delay is the backoff's step). */
const BRIDGE_SHOWN = new Set(["name", "url", "protocol", "connected", "remote", "since", "last_error", "last_error_at", "retry_in_ms", "retry_delay_ms"]);

async function loadBridges() {
  let r;
  try {
    r = await api("/bridges");
  } catch (_) {
    return;
  }
  const list = r.ok && Array.isArray(r.body.result) ? r.body.result : [];
  $("bridges-panel").hidden = list.length === 0;
  $("bridges").replaceChildren(...list.map(bridgeRow));
}

function bridgeRow(b) {
  const li = el("li", "bridge");
  li.dataset.bridge = show(b.name ?? "");
  const head = el("div", "head");
  head.append(
    el("span", "name", b.name),
    el("span", `state outcome ${b.connected ? "o-ok" : "o-error"}`, b.connected ? "connected" : "disconnected"),
    el("span", "url muted", `${show(b.url ?? "")}${b.protocol ? ` · MQTT ${b.protocol}` : ""}`),
  );
  li.append(head);
  const line = el("div", "line");
  if (b.connected && b.since) line.append(el("span", "field since", `since ${when(b.since)} (${ago(b.since)})`));
  if (b.remote && b.remote !== b.url) line.append(el("span", "field remote", `remote ${show(b.remote)}`));
  if (!b.connected && b.retry_in_ms !== null && b.retry_in_ms !== undefined) {
    line.append(el("span", "field retry", `next attempt in ${duration(b.retry_in_ms)}`));
  }
  if (line.children.length) li.append(line);
  const counters = el("div", "counters");
  const field = (cls, k, v) => {
    const f = el("span", `field ${cls}`);
    f.append(el("span", "label", k), document.createTextNode(` ${show(v)}`));
    counters.append(f);
  };
  for (const [k, label] of BRIDGE_COUNTERS) {
    if (b[k] !== undefined && b[k] !== null) field(k, label, b[k]);
  }
  for (const [k, v] of Object.entries(b)) {
    if (!BRIDGE_SHOWN.has(k) && !BRIDGE_COUNTERS.some(([c]) => c === k) && v !== null) field(k, k, v);
  }
  li.append(counters);
  if (b.last_error) {
    const e = el("div", "last-error error");
    e.append(el("span", "label", `last error${b.last_error_at ? `, ${ago(b.last_error_at)}` : ""}`), el("span", "message", ` ${show(b.last_error)}`));
    li.append(e);
  }
  return li;
}

// ---- start ---------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("token-input").value = "";
    login(t);
  });
  $("logout").addEventListener("click", () => logout());
  $("add-device-open").addEventListener("click", () => {
    $("add-device").hidden = false;
    $("new-name").focus();
  });
  $("add-device-cancel").addEventListener("click", () => {
    $("add-device").reset();
    $("add-device").hidden = true;
    say("add-device-error", "");
  });
  $("add-device").addEventListener("submit", createDevice);
  $("add-token").addEventListener("submit", addToken);
  $("tags-form").addEventListener("submit", saveTags);
  $("params-form").addEventListener("submit", saveParams);
  $("param-add").addEventListener("click", () => {
    const row = paramRow({});
    $("params").append(row);
    row.querySelector("input").focus();
  });
  $("parser-form").addEventListener("submit", uploadParser);
  $("parser-remove").addEventListener("click", () =>
    patchDevice({ parser: null }, "parser-status", "Parser removed."),
  );
  $("delete-confirm").addEventListener("input", () => {
    $("delete-device").disabled = $("delete-confirm").value !== state.selected;
  });
  $("delete-form").addEventListener("submit", deleteDevice);
  for (const b of $("ranges").children) {
    b.addEventListener("click", () => {
      state.range = b.dataset.range;
      resetCharts();
      chartsSoon(0, true);
      loadData();
    });
  }
  $("reload-actions").addEventListener("click", reloadActions);
  $("runs-more").addEventListener("click", () => loadRuns(true));
  $("clear").addEventListener("click", () => {
    $("events").replaceChildren();
    state.missed = 0;
    countEvents();
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume" : "Pause";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    if (!state.paused) {
      state.missed = 0;
      countEvents();
    }
  });
  let resized = null;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(renderCharts, 150);
  });
  window.addEventListener("hashchange", () => {
    const t = readToken();
    if (t && t !== state.token) {
      logout();
      login(t);
    } else {
      route();
    }
  });
  const token = readToken();
  if (token) login(token);
  else logout();
});
