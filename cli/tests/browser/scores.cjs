// Drives the dashboard's scored-classes section in headless Chromium (playwright-core): it
// appears once a round is committed, shows the newest round's workers and validators with the
// scores and shares the API serves, and plots each worker's score. Usage: node scores.cjs <api
// url> <output dir>. Run by cli/tests/audit_bitcoind.rs after its round is anchored.
"use strict";
const path = require("path");
const fs = require("fs");
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

const [api, out] = process.argv.slice(2);
const errors = [];
const fail = (msg) => { console.error(`scores check failed: ${msg}${errors.length ? `\npage errors: ${errors.join(" | ")}` : ""}`); process.exit(1); };
const num = (s) => Number(String(s).replace(/[^0-9]/g, ""));

(async () => {
  fs.mkdirSync(out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(api + "/", { waitUntil: "load" });
  await page.waitForSelector("#scores:not([hidden])", { timeout: 30000 }).catch(() => fail("the section never appeared"));
  const stats = await (await fetch(api + "/v1/stats")).json();
  const newest = stats.epochs - 1;
  const served = (await (await fetch(`${api}/v1/epochs/${newest}/rounds`)).json()).rounds[0].round;
  const title = await page.textContent("#round-title");
  if (!title.includes(`epoch ${newest}`)) fail(`title ${title}, newest epoch ${newest}`);
  for (const w of served.workers) {
    const row = `#round-workers tr[data-key="${w.worker}"]`;
    const share = num(await page.textContent(`${row} .share`));
    // The page shows the score to three decimals: the same formatting of the API's value.
    const score = (await page.textContent(`${row} .score`)).trim();
    if (share !== w.share_sats || score !== (w.score / 1e6).toFixed(3)) fail(`worker ${w.worker}: page ${score} / ${share}, API ${w.score} / ${w.share_sats}`);
    if (!(await page.$(`#scores-chart [data-worker="${w.worker}"]`))) fail(`no line for worker ${w.worker}`);
  }
  for (const v of served.sheets) {
    const share = num(await page.textContent(`#round-validators tr[data-key="${v.validator}"] .share`));
    if (share !== v.share_sats) fail(`validator ${v.validator}: page ${share}, API ${v.share_sats}`);
  }
  if (errors.length) fail("errors on the page");
  await page.locator("#scores").screenshot({ path: path.join(out, "scores.png") });
  console.log(`scores section: ${served.workers.length} workers and ${served.sheets.length} validators as the API serves them`);
  await browser.close();
})().catch((e) => fail(e.stack || String(e)));
