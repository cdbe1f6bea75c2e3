// The Cairn dashboard: polls the public JSON API every two seconds and draws what it says.
// No framework and no network beyond this origin; every number shown is in an API answer.
"use strict";

const POLL_MS = 2000;
const HISTORY = 180; // samples kept for the chart (6 minutes)
const EPOCHS_SHOWN = 24;
const history = [];

const $ = (id) => document.getElementById(id);
const short = (h) => (h ? `${h.slice(0, 8)}…${h.slice(-4)}` : "");
const fmt = (n) => (n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US"));

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function drawStats(s) {
  const t = s.tasks || {};
  $("stat-submitted").textContent = fmt(t.submitted);
  $("stat-open").textContent = fmt((t.commit || 0) + (t.reveal || 0));
  $("stat-decided").textContent = fmt(t.decided);
  $("stat-failed").textContent = fmt(t.failed);
  $("stat-receipts").textContent = fmt(s.receipts);
  $("stat-epochs").textContent = fmt(s.epochs);
  $("stat-anchors").textContent = fmt(s.anchors && s.anchors.confirmed);
  $("stat-paid").textContent = fmt(s.ledger && s.ledger.paid);
  history.push({ open: (t.commit || 0) + (t.reveal || 0), decided: t.decided || 0, failed: t.failed || 0, receipts: s.receipts || 0 });
  while (history.length > HISTORY) history.shift();
  drawChart();
}

function drawChart() {
  const svg = $("chart");
  const W = 800, H = 220, L = 50, B = 20, T = 10;
  const series = [["open", "#d29922"], ["decided", "#3fb950"], ["failed", "#f85149"], ["receipts", "#58a6ff"]];
  const max = Math.max(1, ...history.flatMap((p) => series.map(([k]) => p[k])));
  const x = (i) => L + (i * (W - L - 10)) / Math.max(1, history.length - 1);
  const y = (v) => H - B - (v * (H - B - T)) / max;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${L},${T} V${H - B} H${W - 10}`);
  axis.setAttribute("class", "axis");
  axis.setAttribute("fill", "none");
  svg.append(axis);
  for (const v of [0, max]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4);
    label.setAttribute("y", y(v) + 4);
    label.textContent = fmt(v);
    svg.append(label);
  }
  const span = document.createElementNS(ns, "text");
  span.setAttribute("x", W - 180);
  span.setAttribute("y", H - 4);
  span.textContent = `last ${Math.round((history.length * POLL_MS) / 1000)} s`;
  svg.append(span);
  for (const [k, color] of series) {
    if (history.length < 1) continue;
    const p = document.createElementNS(ns, "polyline");
    p.setAttribute("points", history.map((h, i) => `${x(i)},${y(h[k])}`).join(" "));
    p.setAttribute("fill", "none");
    p.setAttribute("stroke", color);
    p.setAttribute("stroke-width", "2");
    p.setAttribute("data-series", k);
    svg.append(p);
  }
}

function drawTimeline(epochs) {
  const box = $("timeline");
  box.replaceChildren();
  epochs.forEach((e, i) => {
    if (i > 0) box.append(el("div", { class: "link", title: "previous header hash" }));
    const a = e.anchor || {};
    const st = a.status || "unanchored";
    const badge = st === "confirmed" ? `anchored · ${a.confirmations} conf` : st === "pending" ? "anchor pending" : st.replace("_", " ");
    const card = el("div", { class: `epoch ${st}`, "data-height": String(e.height), title: `header ${e.hash}` },
      el("div", { class: "h", text: `#${e.height}` }),
      el("div", { text: short(e.hash) }),
      el("div", { text: `${fmt(e.header.receipt_count)} receipts` }),
      el("span", { class: `badge ${st}`, text: badge }));
    if (a.txid) card.title += `\nanchor tx ${a.txid}`;
    box.append(card);
  });
  box.scrollLeft = box.scrollWidth;
}

async function drawWorkers(list) {
  const tbody = $("workers").querySelector("tbody");
  const rows = await Promise.all(list.slice(0, 100).map(async (w) => {
    const bal = await get(`/v1/ledger/${w.key}`).catch(() => ({}));
    const last = (w.rejections || []).slice(-1)[0];
    const tr = el("tr", { "data-key": w.key },
      el("td", {}, el("code", { text: short(w.key), title: w.key })),
      el("td", { class: w.status, text: w.status + (w.ban ? `: ${w.ban.reason}` : "") }),
      el("td", { class: "accepted", text: fmt(w.accepted) }),
      el("td", { class: "rejected", text: fmt(w.rejected) }),
      el("td", { text: last ? last.reason : "" }),
      el("td", { class: "locked", text: fmt(bal.locked) }),
      el("td", { class: "claimable", text: fmt(bal.claimable) }),
      el("td", { class: "paid", text: fmt(bal.paid) }));
    return tr;
  }));
  tbody.replaceChildren(...rows);
}

// Rounds of closed epochs never change: each is fetched once.
const rounds = new Map();
const PALETTE = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff7b72", "#e3b341"];

async function drawScores(epochs) {
  for (const e of epochs) {
    if (e.height < 2 || rounds.has(e.height)) continue;
    const r = await get(`/v1/epochs/${e.height}/rounds`).catch(() => null);
    if (r) rounds.set(e.height, r.rounds.map((v) => v.round));
  }
  const heights = [...rounds.keys()].sort((a, b) => a - b).filter((h) => rounds.get(h).length).slice(-EPOCHS_SHOWN);
  $("scores").hidden = heights.length === 0;
  if (!heights.length) return;
  // The newest round (of the first class in it) in full.
  const newest = heights[heights.length - 1];
  const round = rounds.get(newest)[0];
  $("round-title").textContent = `round credited in epoch ${newest}: class ${short(round.class)}, work of epoch ${round.epoch}`;
  $("round-workers").querySelector("tbody").replaceChildren(...round.workers.map((w) =>
    el("tr", { "data-key": w.worker },
      el("td", {}, el("code", { text: short(w.worker), title: w.worker })),
      el("td", { text: fmt(w.units) }),
      el("td", { class: "score", text: (w.score / 1e6).toFixed(3) }),
      el("td", { class: "share", text: fmt(w.share_sats) }))));
  $("round-validators").querySelector("tbody").replaceChildren(...round.sheets.map((s) =>
    el("tr", { "data-key": s.validator },
      el("td", {}, el("code", { text: short(s.validator), title: s.validator })),
      el("td", { text: fmt(s.stake) }),
      el("td", { class: "share", text: fmt(s.share_sats) }))));
  // Each worker's consensus score in that class, epoch by epoch.
  const points = new Map();
  for (const h of heights) {
    for (const w of rounds.get(h).filter((r) => r.class === round.class).flatMap((r) => r.workers)) {
      if (!points.has(w.worker)) points.set(w.worker, []);
      points.get(w.worker).push([h, w.score]);
    }
  }
  const svg = $("scores-chart");
  const W = 800, H = 220, L = 50, B = 20, T = 10;
  const lo = heights[0], hi = Math.max(heights[0] + 1, newest);
  const x = (h) => L + ((h - lo) * (W - L - 10)) / (hi - lo);
  const y = (s) => H - B - (s * (H - B - T)) / 1e6;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const axis = document.createElementNS(ns, "path");
  axis.setAttribute("d", `M${L},${T} V${H - B} H${W - 10}`);
  axis.setAttribute("class", "axis");
  axis.setAttribute("fill", "none");
  svg.append(axis);
  for (const [v, t] of [[0, "0"], [1e6, "1.0"]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4);
    label.setAttribute("y", y(v) + 4);
    label.textContent = t;
    svg.append(label);
  }
  const legend = $("scores-legend");
  legend.replaceChildren();
  [...points.entries()].forEach(([key, pts], i) => {
    const color = PALETTE[i % PALETTE.length];
    const p = document.createElementNS(ns, pts.length > 1 ? "polyline" : "circle");
    if (pts.length > 1) {
      p.setAttribute("points", pts.map(([h, s]) => `${x(h)},${y(s)}`).join(" "));
      p.setAttribute("fill", "none");
      p.setAttribute("stroke", color);
      p.setAttribute("stroke-width", "2");
    } else {
      p.setAttribute("cx", x(pts[0][0]));
      p.setAttribute("cy", y(pts[0][1]));
      p.setAttribute("r", "4");
      p.setAttribute("fill", color);
    }
    p.setAttribute("data-worker", key);
    svg.append(p);
    const item = el("span", { text: short(key) });
    item.style.color = color;
    legend.append(item);
  });
}

async function drawRecent(epochs) {
  const box = $("recent");
  // Receipts of the newest anchored epochs (a receipt verifies once its epoch is anchored).
  const anchored = epochs.filter((e) => e.anchor && e.anchor.status === "confirmed").map((e) => e.height).reverse();
  for (const h of anchored.slice(0, 5)) {
    const page = await get(`/v1/epochs/${h}/receipts?limit=5`).catch(() => null);
    if (page && page.ids && page.ids.length) {
      box.replaceChildren(el("span", { text: `recent anchored receipts (epoch ${h}): ` }),
        ...page.ids.map((id) => {
          const a = el("a", { class: "receipt-link", "data-id": id, text: short(id), title: id });
          a.addEventListener("click", () => { $("receipt-input").value = id; verify(id); });
          return a;
        }));
      return;
    }
  }
}

async function verify(id) {
  const verdict = $("verdict"), list = $("checks");
  list.replaceChildren();
  $("downloads").hidden = true;
  verdict.className = "";
  verdict.textContent = "checking…";
  if (!/^[0-9a-f]{64}$/.test(id)) {
    verdict.className = "bad";
    verdict.textContent = "a receipt id is 64 lowercase hex characters";
    return;
  }
  try {
    const r = await get(`/v1/receipts/${id}/audit?depth=1`);
    verdict.className = r.ok ? "ok" : "bad";
    verdict.textContent = r.ok
      ? `✓ receipt verified: anchored in block ${r.block_height} (${r.network}), tx ${short(r.anchor_txid)}`
      : `✗ failed at ${r.failed_step}`;
    for (const c of r.checks) {
      const mark = c.outcome === "pass" ? "✓" : c.outcome === "fail" ? "✗" : "·";
      list.append(el("li", { class: c.outcome, "data-check": c.name },
        el("span", { class: "mark", text: mark }), el("b", { text: c.name }), " ", el("span", { class: "detail", text: c.detail })));
    }
    $("download-bundle").href = `/v1/receipts/${id}/bundle?depth=1`;
    $("download-stamped").href = `/v1/receipts/${id}/ots?file=stamped`;
    $("download-ots").href = `/v1/receipts/${id}/ots`;
    $("downloads").hidden = false;
  } catch (e) {
    verdict.className = "bad";
    verdict.textContent = `✗ ${e.message}`;
  }
}

async function poll() {
  try {
    const [health, stats, workers] = await Promise.all([get("/v1/health"), get("/v1/stats"), get("/v1/workers")]);
    $("network").textContent = health.network;
    $("coordinator").textContent = short(health.coordinator);
    $("coordinator").title = health.coordinator;
    $("tip").textContent = health.bitcoin_tip ?? "–";
    const embedded = health.bitcoin_backend === "embedded_regtest";
    $("embedded-banner").hidden = !embedded;
    $("checked-against").textContent = embedded
      ? "Checked here against this devnet's embedded regtest chain, NOT Bitcoin Core."
      : "Checked here against this coordinator's Bitcoin node.";
    const st = $("status");
    st.textContent = health.bitcoin_error ? `bitcoin: ${health.bitcoin_error}` : health.anchoring ? "anchoring" : "not anchoring";
    st.className = `status ${health.bitcoin_error ? "err" : "ok"}`;
    drawStats(stats);
    const from = Math.max(0, stats.epochs - EPOCHS_SHOWN);
    const epochs = stats.epochs ? (await get(`/v1/epochs?from=${from}&limit=${EPOCHS_SHOWN}`)).epochs : [];
    drawTimeline(epochs);
    await drawWorkers(workers.workers || []);
    await drawScores(epochs);
    await drawRecent(epochs);
    document.body.dataset.polled = String(Number(document.body.dataset.polled || 0) + 1);
  } catch (e) {
    const st = $("status");
    st.textContent = `API: ${e.message}`;
    st.className = "status err";
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("lookup").addEventListener("submit", (ev) => { ev.preventDefault(); verify($("receipt-input").value.trim()); });
  poll();
});
