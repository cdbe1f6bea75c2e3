// Drives the dashboard in headless Chromium (playwright-core) against a running devnet:
// the numbers shown match the API, a receipt is verified by clicking through, the downloads
// answer, and screenshots are saved. Usage: node dashboard.cjs <api url> <output dir>.
// Run by cli/tests/dashboard.rs, which starts the devnet and finds Chromium.
"use strict";
const path = require("path");
const fs = require("fs");
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

const [api, out] = process.argv.slice(2);
const errors = [];
const fail = (msg) => { console.error(`dashboard check failed: ${msg}${errors.length ? `\npage errors: ${errors.join(" | ")}` : ""}`); process.exit(1); };
const getJson = async (p) => { const r = await fetch(api + p); if (!r.ok) fail(`${p}: HTTP ${r.status}`); return r.json(); };
const num = (s) => Number(String(s).replace(/[^0-9]/g, ""));

(async () => {
  fs.mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });

  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(api)) external.push(r.url()); });

  await page.goto(api + "/", { waitUntil: "load" });
  if ((await page.title()) !== "Cairn coordinator") fail(`title ${await page.title()}`);

  // Counters only grow: what the page shows after a poll lies between two API reads around it.
  const before = await getJson("/v1/stats");
  const polled = Number((await page.getAttribute("body", "data-polled")) || 0);
  // Two polls later: the second one's reads all started after `before` was taken.
  await page.waitForFunction((n) => Number(document.body.dataset.polled || 0) > n + 1, polled, { timeout: 30000 });
  const shown = {};
  for (const k of ["submitted", "decided", "receipts", "epochs", "anchors", "paid"]) {
    shown[k] = num(await page.textContent(`#stat-${k}`));
  }
  const after = await getJson("/v1/stats");
  const pick = (s) => ({ submitted: s.tasks.submitted, decided: s.tasks.decided, receipts: s.receipts, epochs: s.epochs,
    anchors: s.anchors.confirmed, paid: s.ledger.paid });
  const [lo, hi] = [pick(before), pick(after)];
  for (const k of Object.keys(shown)) {
    if (!(lo[k] <= shown[k] && shown[k] <= hi[k])) fail(`${k}: page shows ${shown[k]}, API said ${lo[k]} then ${hi[k]}`);
  }
  if (shown.receipts < 1 || shown.epochs < 1) fail(`nothing to show yet: ${JSON.stringify(shown)}`);

  // Workers table: one row per registered worker, accepted counts as the API has them.
  const workers = (await getJson("/v1/workers")).workers;
  const rows = await page.$$eval("#workers tbody tr", (trs) => trs.map((tr) => ({
    key: tr.dataset.key, accepted: tr.querySelector(".accepted").textContent, locked: tr.querySelector(".locked").textContent,
  })));
  if (rows.length !== workers.length) fail(`${rows.length} worker rows, API lists ${workers.length}`);
  for (const w of workers) {
    const row = rows.find((r) => r.key === w.key);
    if (!row) fail(`worker ${w.key} missing from the table`);
  }

  // Epoch timeline: the newest epochs, each with its anchor status as the API gives it.
  const cards = await page.$$eval(".epoch", (cs) => cs.map((c) => ({ h: Number(c.dataset.height), cls: c.className })));
  if (cards.length < 1) fail("no epoch on the timeline");
  const newest = cards[cards.length - 1].h;
  const e = await getJson(`/v1/epochs/${newest}`);
  // The API is read after the page, and an epoch only moves forward (unanchored → pending →
  // confirmed): the card may show an earlier state than the API, never a later or unknown one.
  const order = ["unanchored", "pending", "confirmed"];
  const shownAt = order.findIndex((st) => cards[cards.length - 1].cls.split(/\s+/).includes(st));
  const servedAt = order.indexOf(e.anchor.status);
  if (shownAt < 0 || servedAt < 0 || shownAt > servedAt) {
    fail(`epoch ${newest}: card ${cards[cards.length - 1].cls}, API ${e.anchor.status}`);
  }
  if (!cards.some((c) => c.cls.includes("confirmed"))) fail("no anchored epoch shown as confirmed");
  const chart = await page.$$eval("#chart polyline", (ps) => ps.map((p) => p.dataset.series));
  if (chart.length !== 4) fail(`chart has ${chart.length} series`);
  // The devnet runs on the embedded chain: the page says so, loudly, and does not call it
  // Bitcoin Core's word.
  if (!(await page.isVisible("#embedded-banner"))) fail("no embedded-chain banner on the embedded chain");
  const against = await page.textContent("#checked-against");
  if (!against.includes("NOT Bitcoin Core")) fail(`receipt checks described as: ${against}`);
  await page.screenshot({ path: path.join(out, "dashboard.png"), fullPage: true });

  // Receipt lookup: click a recent receipt of an anchored epoch; every step ✓.
  await page.waitForSelector(".receipt-link", { timeout: 20000 });
  const id = await page.getAttribute(".receipt-link", "data-id");
  await page.click(".receipt-link");
  await page.waitForFunction(() => /^[✓✗]/.test(document.getElementById("verdict").textContent), null, { timeout: 30000 });
  if ((await page.inputValue("#receipt-input")) !== id) fail("the clicked receipt is not in the lookup box");
  const verdict = await page.textContent("#verdict");
  if (!verdict.startsWith("✓")) fail(`verdict: ${verdict}`);
  const checks = await page.$$eval("#checks li", (ls) => ls.map((l) => ({ name: l.dataset.check, cls: l.className })));
  const audit = await getJson(`/v1/receipts/${id}/audit?depth=1`);
  if (checks.length !== audit.checks.length || checks.length < 5) fail(`${checks.length} checks shown, API has ${audit.checks.length}`);
  if (!checks.every((c) => c.cls === "pass")) fail(`not all checks pass: ${JSON.stringify(checks)}`);
  // A bad id gets a clear message, not a crash.
  await page.fill("#receipt-input", "not-a-receipt");
  await page.click("#verify-btn");
  const badVerdict = await page.textContent("#verdict");
  if (!badVerdict.includes("64")) fail(`bad id verdict: ${badVerdict}`);
  await page.fill("#receipt-input", id);
  await page.click("#verify-btn");
  await page.waitForFunction(() => document.getElementById("verdict").textContent.startsWith("✓"), null, { timeout: 30000 });
  // Downloads: the bundle, the stamped file and its .ots.
  for (const sel of ["#download-bundle", "#download-stamped", "#download-ots"]) {
    const href = await page.getAttribute(sel, "href");
    const r = await fetch(new URL(href, api));
    const body = Buffer.from(await r.arrayBuffer());
    if (!r.ok || body.length < 32) fail(`${sel} ${href}: HTTP ${r.status}, ${body.length} bytes`);
    if (sel === "#download-ots" && !body.subarray(0, 31).toString("latin1").includes("OpenTimestamps")) fail(".ots magic missing");
  }
  await page.screenshot({ path: path.join(out, "receipt.png"), fullPage: true });

  if (errors.length) fail(`page errors: ${errors.join(" | ")}`);
  if (external.length) fail(`requests outside the node: ${external.join(", ")}`);
  await browser.close();
  console.log(`dashboard ok: ${JSON.stringify(shown)}; ${rows.length} workers; ${cards.length} epochs; receipt ${id} ✓ (${checks.length} checks); screenshots in ${out}`);
})().catch((e) => fail(e.stack || String(e)));
