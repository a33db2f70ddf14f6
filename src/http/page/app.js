// brook's web page: the devices with their status, and for the chosen one
// its Live Inspector (server-sent events) and latest data. Plain DOM, no
// framework, no build step. Everything a device sent (names, topics,
// payloads) is shown with textContent, never parsed as HTML.
"use strict";

/** Where the admin token is kept: this tab's session only. */
const TOKEN_KEY = "brook.admin_token";
/** How often the device list (connected, last input) is asked for again. */
const DEVICES_EVERY_MS = 5000;
/** How often the latest data is asked for again while a device is open. */
const DATA_EVERY_MS = 10000;
/** Rows the inspector keeps; older ones are dropped from the bottom. */
const MAX_EVENTS = 300;
/** Data items shown. */
const DATA_QTY = 20;
/** Wait before reopening a live stream the server closed. */
const RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  selected: null, // device name
  source: null, // the EventSource of the selected device
  rows: new Map(), // device name -> its list button
  timers: [],
  dataSoon: null,
  paused: false,
  missed: 0,
};

// ---- small helpers -------------------------------------------------------

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.round((Date.now() - new Date(iso)) / 1000);
  if (isNaN(s)) return "";
  if (s < 5) return "just now";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function show(text) {
  if (typeof text === "string") return text;
  return JSON.stringify(text);
}

/** An admin API request; resolves to {status, body}. A 401 logs out. */
async function api(path) {
  const r = await fetch(path, {
    headers: { Authorization: `Bearer ${state.token}` },
    cache: "no-store",
  });
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    /* not JSON: a proxy's page, or an endpoint this brook lacks */
  }
  if (r.status === 401) {
    logout("The admin token was refused.");
  }
  return { status: r.status, body };
}

// ---- token ---------------------------------------------------------------

/** The token from `#token=…` (then removed from the address bar) or the session. */
function readToken() {
  const m = location.hash.match(/[#&]token=([^&]*)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
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
  state.rows.clear();
  $("devices").replaceChildren();
  $("bridges").replaceChildren();
  $("bridge-box").hidden = true;
  $("detail").hidden = true;
  $("choose").hidden = false;
  $("app").hidden = true;
  $("logout").hidden = true;
  $("conn").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token-input").focus();
}

async function login(token) {
  state.token = token;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  await loadDevices();
  if (!state.token) return; // refused
  loadBridges();
  state.timers.push(setInterval(loadDevices, DEVICES_EVERY_MS));
  state.timers.push(setInterval(loadBridges, DEVICES_EVERY_MS));
  state.timers.push(setInterval(() => state.selected && loadData(), DATA_EVERY_MS));
}

// ---- devices -------------------------------------------------------------

async function loadDevices() {
  let r;
  try {
    r = await api("/devices");
  } catch (e) {
    $("conn").textContent = "cannot reach brook";
    return;
  }
  if (!state.token) return;
  if (r.status !== 200 || !r.body || !Array.isArray(r.body.result)) {
    $("conn").textContent = `devices: ${(r.body && r.body.message) || `HTTP ${r.status}`}`;
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
    let b = state.rows.get(d.name);
    if (!b) {
      b = el("button", "device");
      b.type = "button";
      b.dataset.device = d.name;
      b.append(el("span", "dot"), el("span", "name", d.name), el("span", "meta"));
      b.addEventListener("click", () => select(d.name));
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
    b.title = d.last_input ? `last input ${new Date(d.last_input).toLocaleString()}` : "no input yet";
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

// ---- bridges -------------------------------------------------------------

/** The `[[bridge]]`s and their state; each opens its pseudo-device `bridge:NAME`. */
async function loadBridges() {
  let r;
  try {
    r = await api("/bridges");
  } catch (_) {
    return;
  }
  if (!state.token || r.status !== 200 || !r.body || !Array.isArray(r.body.result)) return;
  const list = $("bridges");
  const rows = r.body.result.map((b) => {
    const button = el("button", "device");
    button.type = "button";
    button.dataset.bridge = b.name;
    button.classList.toggle("online", !!b.connected);
    const meta = `${b.connected ? "connected" : "down"} · ${b.queued} queued · ` +
      `${b.sent} sent · ${b.received} received · ${b.dropped} dropped`;
    button.append(el("span", "dot"), el("span", "name", b.name), el("span", "meta", meta));
    if (b.last_error) button.append(el("span", "meta error", b.last_error));
    button.title = b.url;
    button.addEventListener("click", () => select(`bridge:${b.name}`));
    const li = el("li");
    li.append(button);
    return li;
  });
  list.replaceChildren(...rows);
  $("bridge-box").hidden = rows.length === 0;
}

function select(name) {
  if (state.selected === name) return;
  state.selected = name;
  for (const [n, b] of state.rows) b.setAttribute("aria-pressed", String(n === name));
  $("choose").hidden = true;
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  $("events").replaceChildren();
  state.missed = 0;
  countEvents();
  $("data").querySelector("tbody").replaceChildren();
  $("data-empty").hidden = true;
  $("data-status").textContent = "";
  openLive();
  loadData();
  if (window.matchMedia("(max-width: 50rem)").matches) {
    $("detail").scrollIntoView({ behavior: "smooth" });
  }
}

// ---- latest data ---------------------------------------------------------

async function loadData() {
  const name = state.selected;
  let r;
  try {
    r = await api(`/devices/${encodeURIComponent(name)}/data?qty=${DATA_QTY}`);
  } catch (e) {
    return;
  }
  if (name !== state.selected) return; // another device was chosen meanwhile
  const body = $("data").querySelector("tbody");
  const items = r.status === 200 && r.body && Array.isArray(r.body.result) ? r.body.result : null;
  if (r.status !== 200 && r.status !== 404) {
    $("data-status").textContent = (r.body && r.body.message) || `HTTP ${r.status}`;
  } else {
    $("data-status").textContent = "";
  }
  body.replaceChildren();
  $("data").hidden = !items || items.length === 0;
  $("data-empty").hidden = !$("data").hidden;
  for (const d of items || []) {
    const tr = el("tr");
    tr.append(
      el("td", "var", d.variable),
      el("td", "value", d.value === undefined ? "" : show(d.value)),
      el("td", "unit", d.unit || ""),
      el("td", "time", d.time ? new Date(d.time).toLocaleString() : ""),
    );
    body.append(tr);
  }
}

/** New data is likely (a publish, a parser run): ask again shortly, once. */
function dataSoon() {
  clearTimeout(state.dataSoon);
  state.dataSoon = setTimeout(() => state.selected && loadData(), 1000);
}

// ---- Live Inspector ------------------------------------------------------

function closeLive() {
  if (state.source) state.source.close();
  state.source = null;
}

function openLive() {
  closeLive();
  const name = state.selected;
  const url = `/devices/${encodeURIComponent(name)}/live?token=${encodeURIComponent(state.token)}`;
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
      field("direction", e.direction);
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
  if (e.type === "publish" || e.type === "parser" || e.type === "action") dataSoon();
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
  window.addEventListener("hashchange", () => {
    const t = readToken();
    if (t && t !== state.token) {
      logout();
      login(t);
    }
  });
  const token = readToken();
  if (token) login(token);
  else logout();
});
