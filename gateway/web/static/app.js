// The dashboard's script: polls the gateway's JSON endpoints and draws the page. Plain JavaScript, no library:
// the chart is a hand-written SVG (docs/DASHBOARD.md says why). Every request goes to the gateway that served
// this page, with the token cookie it set (if any).
"use strict";

const STATUS_EVERY_MS = 2000;
const CHART_EVERY_MS = 10000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
const SVG = "http://www.w3.org/2000/svg";
let range = "hour";
let rawWanted = false;      // the "raw" box: raw readings instead of percent
const colorOf = {};

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// One row spanning a table's columns, saying why it has no others.
function emptyRow(columns, text) {
  const tr = el("tr", {});
  tr.append(el("td", {colspan: columns}, text));
  return tr;
}

async function getJSON(path) {
  const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  const body = await r.json().catch(() => ({error: "not JSON (" + r.status + ")"}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function ago(s) {
  if (s === null || s === undefined) return "never";
  return s < 90 ? s.toFixed(0) + " s ago" : (s / 60).toFixed(0) + " min ago";
}

function color(name) {
  if (!(name in colorOf)) colorOf[name] = COLORS[Object.keys(colorOf).length % COLORS.length];
  return colorOf[name];
}

// --- boards and database -------------------------------------------------------------------------------------
function boardCard(b) {
  const card = el("div", {class: "card " + b.state, "data-board": b.board || b.port, "data-state": b.state,
                          "data-cause": b.cause || "", "data-pending": b.pending === null ? "" : b.pending});
  card.append(el("div", {class: "name"}, b.board || "(no hello yet)"));
  const st = b.state === "caching" ? "caching" : b.state === "unseen" ? "no board seen on this port yet" :
    (b.replaying ? "online, replaying its card" : "online");
  card.append(el("div", {class: "state"}, st));
  if (b.why) card.append(el("div", {class: "why"}, b.why));
  const dl = el("dl");
  const rows = [["pending", b.pending === null ? "unknown (no status yet)" : b.pending + " on its card"],
                ["card", b.card], ["clock", b.clock], ["firmware", b.fw], ["role", b.role +
                (b.collector ? " (" + b.collector + ")" : "")], ["boot", b.boot], ["port", b.port],
                ["last frame", ago(b.last_frame_s)], ["dropped", b.dropped]];
  for (const [k, v] of rows) {
    dl.append(el("dt", {}, k));
    dl.append(el("dd", {class: "f-" + k.replace(" ", "-")}, v === null || v === undefined ? "-" : v));
  }
  card.append(dl);
  return card;
}

function drawDatabase(db) {
  const box = document.getElementById("database");
  const dl = el("dl");
  const add = (k, v, cls) => { dl.append(el("dt", {}, k)); dl.append(el("dd", cls ? {class: cls} : {}, v)); };
  add("state", db.ok ? "taking writes" : "down: " + (db.error || "not answering"), db.ok ? "good" : "bad");
  add("server in use", db.in_use || "not connected yet");
  if (db.servers.length && !db.cluster) add("servers", db.servers.map(s => s.server + ": " + s.role).join("; "));
  const ss = db.semisync;
  if (db.cluster && ss.policy === "off") add("commits", "Galera: a commit is certified by the cluster");
  else add("semi-sync", ss.policy === "off" ? "not checked (semisync = off)" :
      ss.policy + ": " + (ss.degraded === null ? "no commit checked yet" : ss.degraded ?
      "FELL BACK to asynchronous" : "on") + (ss.reduced_acks ? ", " + ss.reduced_acks + " acks on the primary only" : ""),
      ss.degraded ? "bad" : "");
  add("committed", db.committed_rows + " readings in " + db.batches + " transactions");
  for (const u of db.unknown) add("not known", u);
  box.replaceChildren(dl);
  drawCluster(db.cluster);
}

// A Galera cluster (gateway/galera.py): each node as the gateway's last look-up round found it. Hidden otherwise.
function drawCluster(cluster) {
  const section = document.getElementById("cluster-section");
  section.hidden = !cluster;
  if (!cluster) return;
  document.getElementById("cluster-note").textContent = "(Galera: " + cluster.nodes_usable + " of " +
    cluster.nodes.length + " nodes usable, as of " + (cluster.checked ?
    new Date(cluster.checked).toLocaleTimeString() : "no look-up yet") + ")";
  const body = document.querySelector("#cluster tbody");
  body.replaceChildren(...cluster.nodes.map(n => {
    const tr = el("tr", {class: "node " + (n.usable ? "usable" : "unusable"), "data-server": n.server,
                         "data-in-use": String(n.in_use), "data-usable": String(n.usable)});
    const cells = [[n.server], [n.in_use ? (n.usable ? "in use" : "last used") : "", n.in_use && n.usable ? "good" : ""],
                   [n.error ? "down: " + n.error : (n.state || "not ready"), n.error ? "bad" : ""],
                   [n.status || "-", n.status === "Primary" ? "" : "bad"], [n.size === null ? "-" : n.size],
                   [n.usable ? "yes" : "no", n.usable ? "good" : "bad"]];
    for (const [text, cls] of cells) tr.append(el("td", cls ? {class: cls} : {}, text));
    return tr;
  }));
  if (!cluster.nodes.length) body.append(emptyRow(6, "no node configured"));
}

async function pollStatus() {
  try {
    const s = await getJSON("/api/status");
    const boards = document.getElementById("boards");
    boards.replaceChildren(...s.boards.map(boardCard));
    drawDatabase(s.database);
    drawAlerts(s.open_alerts || [], s.alerts_enabled);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    document.getElementById("updated").textContent = "the gateway does not answer: " + e.message;
  }
}

function drawAlerts(alerts, enabled) {
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren(...alerts.map(a => {
    const tr = el("tr", {class: "alert-" + a.kind});
    const what = a.kind + (a.probe === null || a.probe === undefined ? "" : " (probe " + a.probe + ")");
    for (const v of [a.opened_at, a.board, what, a.detail]) tr.append(el("td", {}, v || ""));
    return tr;
  }));
  if (!alerts.length) {
    body.append(emptyRow(4, enabled ? "none open" : "alerts are off ([alerts] enabled = false)"));
  }
  document.body.dataset.alerts = String(alerts.length);
}

// --- the chart -------------------------------------------------------------------------------------------------
const PAD = {l: 52, r: 34, t: 10, b: 24};

function drawChart(box, series, from, to, title, W = 1000, H = 260) {
  // When the readings cover only the end of the range (a board started a while ago), the axis starts a little
  // before the first one instead of drawing an empty hour; the range still bounds what is asked for.
  const first = Math.min(...series.flatMap(s => s.points.map(p => p[0])));
  if (isFinite(first) && first > from) from = Math.max(from, first - Math.max(2, (to - first) * 0.05));
  const svg = el("svg:svg", {viewBox: "0 0 " + W + " " + H, role: "img"});
  const pts = series.flatMap(s => s.points.filter(p => p[1] !== null).map(p => p[1]));
  let lo = Math.min(...pts), hi = Math.max(...pts);
  if (!pts.length) { lo = 0; hi = 1; }
  if (hi - lo < 1) { hi += 0.5; lo -= 0.5; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const digits = hi - lo < 5 ? 1 : 0;      // a probe steady within a few percent still gets distinct labels
  const x = t => PAD.l + (t - from) / (to - from) * (W - PAD.l - PAD.r);
  const y = v => H - PAD.b - (v - lo) / (hi - lo) * (H - PAD.t - PAD.b);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    svg.append(el("svg:line", {class: "grid", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v)}));
    svg.append(el("svg:text", {x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end"}, v.toFixed(digits)));
  }
  for (let i = 0; i <= 6; i++) {
    const t = from + (to - from) * i / 6;
    const d = new Date(t * 1000);
    const label = (to - from) > 86400 * 1.5 ? d.toLocaleDateString([], {weekday: "short", day: "numeric"}) + " " +
      d.toLocaleTimeString([], {hour: "2-digit", hourCycle: "h23"}) :
      d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: (to - from) < 600 ? "2-digit" : undefined,
                                hourCycle: "h23"});
    svg.append(el("svg:text", {x: x(t), y: H - 6, "text-anchor": "middle"}, label));
  }
  svg.append(el("svg:line", {class: "axis", x1: PAD.l, x2: PAD.l, y1: PAD.t, y2: H - PAD.b}));
  svg.append(el("svg:line", {class: "axis", x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b}));
  for (const s of series) {
    // Bands where readings arrived by replay: one rectangle per run of replayed points.
    let start = null, prev = null;
    const band = (a, b) => svg.append(el("svg:rect", {class: "band", x: x(a) - 1, y: PAD.t,
                                      width: Math.max(2, x(b) - x(a) + 2), height: H - PAD.t - PAD.b,
                                      "data-series": s.name}));
    for (const p of s.points) {
      if (p[2] && start === null) start = p[0];
      if (!p[2] && start !== null) { band(start, prev); start = null; }
      prev = p[0];
    }
    if (start !== null) band(start, prev);
  }
  for (const s of series) {
    // The line, broken where consecutive readings are further apart than the series' gap_s.
    let d = "", last = null, n = 0, breaks = 0;
    for (const p of s.points) {
      if (p[1] === null) { last = null; continue; }
      const cmd = (last === null || p[0] - last > s.gap_s) ? "M" : "L";
      if (cmd === "M" && last !== null) breaks++;
      d += cmd + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1) + " ";
      if (s.points.length === 1 || cmd === "M") d += "l0.01 0 ";   // a lone point still shows (round caps)
      last = p[0]; n++;
    }
    svg.append(el("svg:path", {class: "series", d: d.trim(), stroke: color(s.name), "stroke-linecap": "round",
                               "data-series": s.name, "data-points": n, "data-breaks": breaks}));
  }
  const wrap = el("div", {class: "chart"});
  if (title) {
    const h = el("h3", {}, title);
    h.style.color = color(title);      // the CSSOM, not a style attribute: the page's CSP refuses inline styles
    wrap.append(h);
  }
  wrap.append(svg);
  box.replaceWith(wrap);
  return wrap;
}

let chartAll = null;
async function pollChart() {
  const note = document.getElementById("chart-note");
  try {
    const r = await getJSON("/api/readings?range=" + range + (rawWanted ? "&value=raw" : ""));
    document.getElementById("value-name").textContent = r.value === "pct" ? "(%)" : "(raw)";
    document.body.dataset.value = r.value;
    chartAll = drawChart(chartAll || document.getElementById("chart-all"), r.series, r.from, r.to, null);
    chartAll.id = "chart-all";
    const charts = document.getElementById("charts");
    charts.replaceChildren();
    for (const s of r.series) {
      const slot = el("div");
      charts.append(slot);
      drawChart(slot, [s], r.from, r.to, s.name, 600, 200).dataset.probe = s.name;
    }
    const rows = r.series.reduce((a, s) => a + s.rows, 0);
    const uncalibrated = r.value === "pct" ? r.series.filter(s => !s.calibrated).map(s => s.name) : [];
    note.textContent = (r.series.length ? rows + " readings" + (r.bucket_s ? ", averaged per " + r.bucket_s + " s" : "") +
      "; " + r.series.length + " probe(s)" : "no readings in this range") +
      (uncalibrated.length ? "; not calibrated, so not drawn in %: " + uncalibrated.join(", ") +
       " (soil-gateway calibrate BOARD --dry, then --wet; or tick raw)" : "");
    document.body.dataset.charts = String(Number(document.body.dataset.charts || 0) + 1);
  } catch (e) {
    note.textContent = "chart not updated: " + e.message;
  }
}

async function pollEvents() {
  try {
    const r = await getJSON("/api/events");
    const body = document.querySelector("#events tbody");
    body.replaceChildren(...r.events.map(e => {
      const tr = el("tr");
      for (const v of [e.received_at, e.board, e.event, e.detail]) tr.append(el("td", {}, v || ""));
      return tr;
    }));
    if (!r.events.length) body.append(emptyRow(4, "nothing in the last hour"));
  } catch (e) {
    /* the database is away: the status above says so */
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const r of document.querySelectorAll("input[name=range]")) {
    r.addEventListener("change", () => { range = r.value; pollChart(); });
  }
  const rawBox = document.getElementById("raw-toggle");
  rawBox.addEventListener("change", () => { rawWanted = rawBox.checked; pollChart(); });
  pollStatus(); pollChart(); pollEvents();
  setInterval(pollStatus, STATUS_EVERY_MS);
  setInterval(pollChart, CHART_EVERY_MS);
  setInterval(pollEvents, CHART_EVERY_MS);
});
