// The live view: session, server-sent frames, and incremental DOM updates batched per animation frame.
import { Sankey, legend } from "./sankey.js";
import { drawTrend, drawPlan, drawTank } from "./charts.js";
import { el, fmt, hhmm } from "./svg.js";

const $ = (id) => document.getElementById(id);
const state = { session: null, meta: null, frame: null, pending: null, scheduled: false, unit: null, trendTag: null };
// figures read by the tests and the benchmark: push delay [s] and frame handling time [ms]
const stats = { frames: 0, metas: 0, delays: [], handleMs: [], lastDelay: null };
window.__symtwin = stats;

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
    body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  if (r.status === 401) { window.location.assign("/login"); throw new Error("session expired"); }
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
  return j;
}

function message(text, error = false) {
  const m = $("msg");
  m.textContent = text;
  m.classList.toggle("error", error);
}

// ------------------------------------------------------------------ controls

function setupControls() {
  const s = state.session;
  $("who").textContent = `${s.user} · ${s.party} · ${s.role}`;
  $("site").textContent = s.site;
  $("logout").addEventListener("click", async () => {
    try { await api("/logout", {}); } catch (e) { /* expired anyway */ }
    window.location.assign("/login");
  });
  if (s.role === "operator") {
    $("mode-buttons").hidden = false;
    for (const b of $("mode-buttons").querySelectorAll("button")) {
      b.addEventListener("click", async () => {
        try {
          await api("/api/mode", { mode: b.dataset.mode, reason: "live view" });
          message(`mode set to ${b.dataset.mode}`);
        } catch (e) { message(`mode not changed: ${e.message}`, true); }
      });
    }
  }
  $("unit-close").addEventListener("click", () => { state.unit = null; $("unit-panel").hidden = true; });
  $("tag-filter").addEventListener("input", filterTags);
  let scrollQueued = false;
  $("tags-scroll").addEventListener("scroll", () => {
    if (scrollQueued) return;
    scrollQueued = true;
    requestAnimationFrame(() => { scrollQueued = false; renderWindow(); });
  }, { passive: true });
  legend($("legend"));
}

// ------------------------------------------------------------------ tags table (windowed, keyed rows)
// Only the rows in and near the scroll box exist in the DOM (about 40 whatever the tag count), so a frame
// costs the same layout and paint with 10 or 10,000 tags; scrolling or filtering re-renders the window.

const ROW_H = 21; // px; fixed by the CSS for #tags rows
const rows = new Map(); // tag id -> {tr, value, est, status, last} for the rows currently in the DOM
let allIds = [];
let shownIds = [];
let windowKey = "";

function buildTagTable() {
  allIds = Object.keys(state.meta.tags);
  $("tag-count").textContent = `${allIds.length} visible to ${state.session.party}`;
  filterTags();
}

function filterTags() {
  const q = $("tag-filter").value.trim().toLowerCase();
  shownIds = q === "" ? allIds : allIds.filter((id) => id.toLowerCase().includes(q));
  // the box is as tall as its rows up to 420 px (its size is fixed so that layout stays inside it)
  $("tags-scroll").style.height = `${Math.min(420, (shownIds.length + 1) * ROW_H + 8)}px`;
  windowKey = "";
  renderWindow();
}

function spacer(height) {
  const tr = document.createElement("tr");
  tr.className = "spacer";
  const td = document.createElement("td");
  td.colSpan = 7;
  td.style.height = `${height}px`;
  tr.appendChild(td);
  return tr;
}

function makeRow(id) {
  const m = state.meta.tags[id];
  const tr = document.createElement("tr");
  tr.dataset.tag = id;
  tr.className = "clickable";
  const cells = [id, m.owner, m.unit, "", "", m.eng_unit, ""].map((text, i) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (i === 3 || i === 4) td.className = "num";
    tr.appendChild(td);
    return td;
  });
  tr.addEventListener("click", () => openUnit(m.unit, id));
  return { tr, value: cells[3], est: cells[4], status: cells[6], last: ["", "", ""] };
}

function renderWindow() {
  const box = $("tags-scroll");
  const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 10);
  const count = Math.ceil((box.clientHeight || 420) / ROW_H) + 20;
  const ids = shownIds.slice(first, first + count);
  const key = `${first}:${ids.length}:${shownIds.length}`;
  if (key === windowKey) return;
  windowKey = key;
  const keep = new Map();
  for (const id of ids) keep.set(id, rows.get(id) || makeRow(id));
  rows.clear();
  for (const [id, r] of keep) rows.set(id, r);
  const bottom = (shownIds.length - first - ids.length) * ROW_H;
  $("tags").querySelector("tbody").replaceChildren(spacer(first * ROW_H), ...[...keep.values()].map((r) => r.tr), spacer(bottom));
  if (state.frame) for (const id of rows.keys()) updateRow(id, state.frame);
}

function cellTexts(id, f) {
  const v = f.tags[id];
  if (v) {
    const ovr = v[4] !== null ? ` (override ${fmt(v[4])})` : "";
    // an estimate without a standard deviation (open-loop twin) shows as the bare value
    const est = v[1] === null ? "–" : v[2] === null || v[2] === undefined ? fmt(v[1]) : `${fmt(v[1])} ± ${fmt(v[2], 2)}`;
    return [fmt(v[0]) + ovr, est, v[3]];
  }
  const a = f.agg[id];
  if (a) {
    const m = state.meta.tags[id];
    return [`${fmt(a[1])} [${fmt(a[2])}…${fmt(a[3])}]`, `mean ${Math.round(m.interval_s / 60)} min to ${hhmm(a[0])}`, "aggregated"];
  }
  return ["–", "–", state.meta.tags[id] && state.meta.tags[id].resolution === "aggregated" ? "aggregated" : "missing"];
}

function updateRow(id, f) {
  const r = rows.get(id);
  if (!r) return;
  const t = cellTexts(id, f);
  if (t[0] !== r.last[0]) r.value.textContent = t[0];
  if (t[1] !== r.last[1]) r.est.textContent = t[1];
  if (t[2] !== r.last[2]) { r.status.textContent = t[2]; r.status.className = `status-${t[2]}`; }
  r.last = t;
}

function updateTagTable(f) {
  for (const id of rows.keys()) updateRow(id, f);
}

// ------------------------------------------------------------------ header and alarms

function updateHeader(f) {
  const mode = $("mode");
  if (mode.textContent !== f.mode) { mode.textContent = f.mode; mode.className = `mode ${f.mode}`; }
  for (const b of $("mode-buttons").querySelectorAll("button")) b.classList.toggle("active", b.dataset.mode === f.mode);
  const solveTxt = `${f.solve.status}${f.solve.time_s !== null ? ` in ${fmt(f.solve.time_s, 2)} s` : ""}${f.solve.at ? ` at ${hhmm(f.solve.at)}` : ""}`;
  $("solve").textContent = solveTxt;
  $("fallback").textContent = f.fallback;
  $("plant-time").textContent = new Date(f.t * 1000).toISOString().slice(11, 19);
  $("dead-letters").textContent = String(f.dead_letters);
  if (stats.lastDelay !== null) $("latency").textContent = `${Math.round(stats.lastDelay * 1000)} ms`;
}

const alarmItems = new Map();

function updateAlarms(f) {
  const list = $("alarms");
  const seen = new Set();
  const items = [...f.alarms];
  if (f.fallback !== "none") items.unshift({ key: "fallback", severity: "alarm", message: `fallback engaged: ${f.fallback}`, since: f.t });
  for (const a of items) {
    seen.add(a.key);
    let li = alarmItems.get(a.key);
    if (!li) {
      li = document.createElement("li");
      li.dataset.key = a.key;
      li.appendChild(document.createElement("span"));
      const since = document.createElement("span");
      since.className = "since";
      li.appendChild(since);
      list.appendChild(li);
      alarmItems.set(a.key, li);
    }
    li.className = a.severity;
    li.firstChild.textContent = a.message;
    li.lastChild.textContent = `since ${hhmm(a.since)}`;
  }
  for (const [k, li] of alarmItems) if (!seen.has(k)) { li.remove(); alarmItems.delete(k); }
  $("alarm-count").textContent = `${items.length}`;
}

// ------------------------------------------------------------------ unit panel

const unitRows = new Map();

async function openUnit(unitId, tag = null) {
  let u;
  try { u = await api(`/api/units/${encodeURIComponent(unitId)}`); } catch (e) { message(e.message, true); return; }
  state.unit = u;
  $("unit-panel").hidden = false;
  $("unit-title").textContent = `${u.id} — ${u.model}, owned by ${u.owner}`;
  const body = $("unit-tags").querySelector("tbody");
  body.replaceChildren();
  unitRows.clear();
  const op = state.session.role === "operator";
  for (const [id, m] of Object.entries(u.tags)) {
    const tr = document.createElement("tr");
    tr.className = "clickable";
    tr.dataset.tag = id;
    const tds = [id, "", "", m.eng_unit, "", ""].map((t, i) => {
      const td = document.createElement("td");
      td.textContent = t;
      if (i === 1 || i === 2) td.className = "num";
      tr.appendChild(td);
      return td;
    });
    if (op && m.own && m.direction === "setpoint") {
      const box = tds[5];
      box.className = "ovr";
      const input = document.createElement("input");
      input.type = "number"; input.step = "any"; input.placeholder = m.eng_unit;
      input.setAttribute("aria-label", `override ${id}`);
      input.dataset.override = id;
      const set = document.createElement("button"); set.textContent = "override"; set.dataset.action = "override";
      const rel = document.createElement("button"); rel.textContent = "release"; rel.dataset.action = "release";
      set.addEventListener("click", async (ev) => {
        ev.stopPropagation();
        const value = Number(input.value);
        if (input.value === "" || !Number.isFinite(value)) { message("enter a number", true); return; }
        try { await api("/api/override", { tag: id, value, reason: "live view" }); message(`${id} overridden to ${value} ${m.eng_unit}`); }
        catch (e) { message(`override refused: ${e.message}`, true); }
      });
      rel.addEventListener("click", async (ev) => {
        ev.stopPropagation();
        try { await api("/api/release", { tag: id, reason: "live view" }); message(`${id} released to the controller`); }
        catch (e) { message(`release refused: ${e.message}`, true); }
      });
      input.addEventListener("click", (ev) => ev.stopPropagation());
      box.append(input, set, rel);
    }
    tr.addEventListener("click", () => loadTrend(id));
    body.appendChild(tr);
    unitRows.set(id, { tr, value: tds[1], est: tds[2], status: tds[4] });
  }
  if (!Object.keys(u.tags).length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 6;
    td.className = "hint";
    td.textContent = `${u.owner} shares no tag of this unit with ${state.session.party}`;
    tr.appendChild(td);
    body.appendChild(tr);
  }
  const plans = $("plans");
  plans.replaceChildren();
  for (const id of Object.keys(u.plans)) {
    const h = document.createElement("h3");
    h.textContent = `Plan vs actual: ${id}`;
    const svg = el("svg", { class: "chart", "data-plan": id });
    plans.append(h, svg);
  }
  if (state.frame) updateUnit(state.frame);
  const first = tag || Object.keys(u.tags)[0];
  if (first) loadTrend(first); else $("trend").replaceChildren();
}

function updateUnit(f) {
  const u = state.unit;
  if (!u) return;
  for (const [id, r] of unitRows) {
    const t = cellTexts(id, f);
    const last = r.last || ["", "", ""];
    if (t[0] !== last[0]) r.value.textContent = t[0];
    if (t[1] !== last[1]) r.est.textContent = t[1];
    if (t[2] !== last[2]) { r.status.textContent = t[2]; r.status.className = `status-${t[2]}`; }
    r.last = t;
  }
  const st = f.states[u.id];
  const box = $("unit-states");
  if (st && Object.keys(st).length) {
    if (!box.firstChild) {
      const h = document.createElement("h3"); h.textContent = "Unmeasured states (twin)";
      const wrap = document.createElement("div"); wrap.className = "states";
      const tank = el("svg", { class: "tank" });
      const list = document.createElement("table"); list.className = "grid";
      wrap.append(tank, list);
      box.append(h, wrap);
    }
    const tank = box.querySelector("svg.tank");
    const layers = Object.keys(st).some((k) => k.startsWith("layer_"));
    tank.style.display = layers ? "" : "none";
    if (layers) drawTank(tank, st);
    const list = box.querySelector("table");
    list.replaceChildren(...Object.entries(st).filter(([k]) => !k.startsWith("layer_")).map(([k, v]) => {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = k;
      const b = document.createElement("td"); b.className = "num"; b.textContent = fmt(v);
      tr.append(a, b);
      return tr;
    }));
  } else box.replaceChildren();
  for (const svg of $("plans").querySelectorAll("svg[data-plan]")) {
    const p = f.plans[svg.dataset.plan];
    const key = p ? `${p.times[0]}|${p.planned.join(",")}|${p.actual_times.length}|${p.actual.at(-1)}` : "";
    if (key === svg.__key) continue; // plans change once per control period, not per frame
    svg.__key = key;
    if (p) drawPlan(svg, p, f.t, state.meta.tags[svg.dataset.plan] ? state.meta.tags[svg.dataset.plan].eng_unit : "");
  }
}

async function loadTrend(tag) {
  state.trendTag = tag;
  for (const [id, r] of unitRows) r.tr.classList.toggle("selected", id === tag);
  $("trend-title").textContent = `Trend: ${tag} (last 3 h)`;
  try {
    const t = await api(`/api/trend?tag=${encodeURIComponent(tag)}&hours=3`);
    if (state.trendTag !== tag) return;
    if (t.resolution === "aggregated") $("trend-title").textContent += ` — mean, min–max per ${Math.round(t.interval_s / 60)} min`;
    drawTrend($("trend"), t);
  } catch (e) { message(`trend: ${e.message}`, true); }
}

// ------------------------------------------------------------------ frames

let sankey = null;

function onMeta(meta) {
  stats.metas++;
  state.meta = meta;
  sankey.setMeta(meta);
  buildTagTable();
  if (state.frame) { sankey.update(state.frame.flows); updateTagTable(state.frame); }
}

function apply() {
  state.scheduled = false;
  const f = state.pending;
  state.pending = null;
  if (!f || !state.meta) return;
  const t0 = performance.now();
  state.frame = f;
  updateHeader(f);
  sankey.update(f.flows);
  updateTagTable(f);
  updateAlarms(f);
  if (state.unit) updateUnit(f);
  const dt = performance.now() - t0;
  stats.handleMs.push(dt);
  if (stats.handleMs.length > 1000) stats.handleMs.shift();
}

function onFrame(f) {
  const now = Date.now() / 1000;
  const delay = now - (f.wall ?? f.sent);
  stats.frames++;
  stats.lastDelay = delay;
  stats.delays.push(delay);
  if (stats.delays.length > 1000) stats.delays.shift();
  state.pending = f; // a newer frame replaces one not yet drawn
  if (!state.scheduled) { state.scheduled = true; requestAnimationFrame(apply); }
}

function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { $("conn").textContent = "live"; $("conn").className = "conn ok"; });
  es.addEventListener("meta", (ev) => onMeta(JSON.parse(ev.data)));
  es.addEventListener("frame", (ev) => onFrame(JSON.parse(ev.data)));
  es.addEventListener("expired", () => { es.close(); window.location.assign("/login"); });
  es.addEventListener("error", async () => {
    $("conn").textContent = "reconnecting…"; $("conn").className = "conn down";
    if (es.readyState === EventSource.CLOSED) {
      try { await api("/api/session"); setTimeout(connect, 2000); } catch (e) { /* redirected to login */ }
    }
  });
}

async function main() {
  try { state.session = await api("/api/session"); } catch (e) { return; }
  sankey = new Sankey($("sankey"), (u) => openUnit(u));
  setupControls();
  connect();
}

main();
