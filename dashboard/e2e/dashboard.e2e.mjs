// Browser test of the Vigil dashboard: Debian's Chromium (never a downloaded browser)
// driven by playwright-core against the e2e_feed example (a real dashboard server on the
// embedded bus). Logs in, checks the ward overview updates live, opens a patient, checks the
// charts and the qEEG trends panel (heatmaps, spans, click-through to stored EEG), acknowledges
// the alert and checks the acknowledgement reached vigil.alerts.
//
//   VIGIL_E2E_FEED=target/debug/examples/e2e_feed node dashboard/e2e/dashboard.e2e.mjs
//
// Screenshots go to VIGIL_E2E_ARTIFACTS (default target/e2e/).
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { check, colouredPixels, heldClick, launchBrowser, log, logIn, run, startProcess } from "./harness.mjs";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const FEED = process.env.VIGIL_E2E_FEED || join(ROOT, "target/debug/examples/e2e_feed");
const ARTIFACTS = process.env.VIGIL_E2E_ARTIFACTS || join(ROOT, "target/e2e");
const USER = "alice", PASSWORD = "correct horse battery staple";
const P1 = "e2e-patient-1", P2 = "e2e-patient-2";

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const feed = startProcess(FEED);
  let browser;
  try {
    const url = (await feed.waitLine(/^VIGIL_E2E_URL=/)).split("=")[1];
    log(`dashboard at ${url}`);
    browser = await launchBrowser();
    const { context, page, problems } = browser;

    await page.goto(url);
    // Wrong password first: the page says so and stays on the login form.
    await logIn(page, USER, "wrong");
    await page.waitForFunction(() => document.getElementById("login-error").textContent.length > 0);
    check(/wrong password/.test(await page.textContent("#login-error")), "wrong password refused");
    problems.length = 0; // the 401 of that attempt is logged by the browser as an error

    await page.fill("input[name=password]", PASSWORD);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector(`[data-testid="tile-${P1}"]`, { timeout: 15000 });
    await page.waitForSelector(`[data-testid="tile-${P2}"]`);
    check(true, "ward shows both assigned patients");
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "vigil_session");
    check(session && session.httpOnly && session.sameSite === "Strict", "session cookie is HttpOnly + SameSite=Strict");
    check(await page.evaluate(() => !document.cookie.includes("vigil_session")), "page script cannot read the session cookie");

    const hrText = () => page.textContent(`[data-testid="tile-${P2}"] [data-testid="tile-hr"]`);
    const first = await hrText();
    check(/\d+ bpm @/.test(first), `heart rate shown with its time: ${first}`);
    await page.waitForFunction(([sel, before]) => document.querySelector(sel).textContent !== before,
      [`[data-testid="tile-${P2}"] [data-testid="tile-hr"]`, first], { timeout: 10000 });
    check(true, `heart rate updates live (${first} -> ${await hrText()})`);

    // The alert: banner, red tile sorted first.
    await page.waitForSelector('[data-testid="alarm-banner"]:not([hidden])', { timeout: 15000 });
    const raised = (await feed.waitLine(/^RAISED /)).split(" ")[1];
    check((await page.textContent('[data-testid="alarm-banner"]')).includes(P1), "alarm banner names the patient");
    const firstTile = await page.getAttribute("[data-testid=tiles] > a:first-child", "data-patient");
    check(firstTile === P1, "patient with the unacknowledged alert is sorted first");
    check(/UNACKNOWLEDGED/.test(await page.textContent(`[data-testid="tile-${P1}"] [data-testid="tile-alert"]`)), "tile shows the unacknowledged alert");
    check(/^\d\.\d\d|not evaluated/.test(await page.textContent(`[data-testid="tile-${P1}"] [data-testid="tile-p"]`)), "tile shows a probability or 'not evaluated'");
    await page.screenshot({ path: join(ARTIFACTS, "ward.png") });

    // Patient view, by a press held across a re-render (the page redraws at least every second):
    // a click must not be lost to a live update.
    const trendLoads = [];
    page.on("request", (r) => { if (r.url().includes(`/api/patients/${P1}/history/trends`)) trendLoads.push(Date.now()); });
    await heldClick(page, `[data-testid="tile-${P1}"] h3`);
    await page.waitForSelector('[data-testid="patient-title"]', { state: "visible", timeout: 5000 });
    check((await page.textContent('[data-testid="patient-title"]')) === P1, "patient view opened by a press held across a re-render");
    await page.waitForSelector('[data-testid="eeg-chart"] canvas', { timeout: 15000 });
    const scale = await page.textContent('[data-testid="eeg-scale"]');
    check(/\u00b5V between channel baselines/.test(scale) && /Fp1-F7, F7-T7, C3-P3, C4-P4/.test(scale), `EEG scale and channel labels shown: ${scale}`);
    await page.waitForSelector('[data-testid="prob-chart"] canvas');
    await page.waitForSelector('[data-testid="hr-chart"] canvas');
    check(/p = \d\.\d\d|not evaluated/.test(await page.textContent('[data-testid="prob-latest"]')), "latest probability shown");
    // The seizing patient's provisional lower bound is shown after its final values, marked.
    await page.waitForSelector('[data-testid="prob-provisional"]', { timeout: 15000 });
    const provisional = await page.textContent('[data-testid="prob-provisional"]');
    check(/provisional \u2265 0\.93 @ /.test(provisional), `provisional lower bound shown: ${provisional}`);
    // ... and drawn: pixels of its dashed series colour (#e57373) on the probability chart.
    const dashed = await page.evaluate(() => {
      const c = document.querySelector("#prob-chart canvas");
      const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - 229) < 20 && Math.abs(data[i + 1] - 115) < 20 && Math.abs(data[i + 2] - 115) < 20) n++;
      }
      return n;
    });
    check(dashed > 50, `provisional series drawn (${dashed} pixels)`);
    // The probability series holds nulls (not evaluated) and they are drawn as gaps.
    const nulls = await page.evaluate(() => {
      const u = [...document.querySelectorAll("#prob-chart .uplot")].length;
      return u;
    });
    check(nulls === 1, "one probability chart");

    // qEEG trends: 30 min of stored intervals plus live ones, drawn as heatmaps.
    await page.waitForFunction(() => /double banana/.test(document.getElementById("trends-montage").textContent), null, { timeout: 15000 });
    check(true, `trend regions named: ${await page.textContent('[data-testid="trends-montage"]')}`);
    const heatPixels = () => colouredPixels(page, "trends-canvas");
    const coloured = await heatPixels();
    check(coloured > 5000, `CSA heatmaps drawn (${coloured} coloured pixels)`);
    // The feed's stored trends end 50 s before its first live interval (as when storage lags
    // the live feed): the page fetches that time again within seconds, not at its 60 s reload.
    for (const until = Date.now() + 10000; trendLoads.length < 2 && Date.now() < until;) await page.waitForTimeout(250);
    check(trendLoads.length >= 2 && trendLoads[1] - trendLoads[0] < 10000,
      `the gap between stored and live trends fetched again ${trendLoads.length >= 2 ? ((trendLoads[1] - trendLoads[0]) / 1000).toFixed(1) : "never"} s after the first load`);
    await page.waitForSelector('[data-testid="trends-aeeg"] canvas');
    await page.waitForSelector('[data-testid="trends-bsr"] canvas');
    await page.click('button[data-span="4"]');
    await page.waitForSelector('button[data-span="4"].active');
    check(true, "span switched to 4 h");
    await page.click('button[data-span="1"]');
    await page.waitForSelector('button[data-span="1"].active');
    // Click 30 s before now on the heatmap: the stored EEG page opens there.
    await page.locator('[data-testid="trends-canvas"]').scrollIntoViewIfNeeded();
    const box = await page.locator('[data-testid="trends-canvas"]').boundingBox();
    const clickedAt = Date.now();
    // The heatmaps share the aEEG chart's plotting area (uPlot's bbox, in device pixels).
    const { plotLeft, plotWidth } = await page.evaluate(() => {
      const over = document.querySelector("#trends-aeeg .u-over");
      return { plotLeft: over.offsetLeft, plotWidth: over.clientWidth };
    });
    const x = plotLeft + plotWidth * (1 - 30 / 3600);
    await page.mouse.click(box.x + x, box.y + 20);
    await page.waitForSelector('[data-testid="eeg-page"]:not([hidden])', { timeout: 5000 });
    await page.waitForSelector('[data-testid="eeg-page-chart"] canvas', { timeout: 15000 });
    const fromMs = Number(await page.getAttribute('[data-testid="eeg-page-time"]', "data-from-ms"));
    const expected = clickedAt - 30000 - 5000; // page of 10 s centred on the click
    check(Math.abs(fromMs - expected) < 15000, `EEG page starts at the clicked time (${fromMs - expected} ms off)`);
    check(/4 channels at 256 Hz, as recorded, high-pass 0.5 Hz, low-pass 70 Hz, notch 50 Hz/.test(await page.textContent('[data-testid="eeg-page-status"]')), "EEG page shows its montage and filters");
    await page.selectOption("#eeg-page-montage", "average");
    await page.waitForFunction(() => /average reference/.test(document.getElementById("eeg-page-status").textContent), null, { timeout: 10000 });
    check(true, "montage switched to average reference");
    const pageInk = await page.evaluate(() => {
      const c = document.querySelector("#eeg-page-chart canvas");
      if (!c) return 0;
      const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let ink = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
      return ink;
    });
    check(pageInk > 5000, `re-referenced EEG page drawn (${pageInk} pixels)`);
    await page.screenshot({ path: join(ARTIFACTS, "patient-trends.png"), fullPage: true });

    // Acknowledge.
    const ack = `[data-testid="ack"][data-alert="${raised}"]`;
    await page.waitForSelector(ack);
    await page.screenshot({ path: join(ARTIFACTS, "patient-alert.png"), fullPage: true });
    await heldClick(page, ack);
    const ackLine = await feed.waitLine(new RegExp(`^ACK ${raised} ${P1} by ${USER}$`), 10000);
    check(true, `AlertEvent acknowledged published on vigil.alerts: ${ackLine}`);
    await page.waitForFunction((id) => {
      const row = document.querySelector(`[data-testid="alert-row"][data-alert="${id}"] [data-testid="alert-state"]`);
      return row && /acknowledged by alice/.test(row.textContent);
    }, raised, { timeout: 10000 });
    check(true, "alert shown as acknowledged by alice");
    await page.waitForSelector('[data-testid="alarm-banner"][hidden]', { state: "attached", timeout: 10000 });
    check(true, "alarm banner cleared after acknowledgement");
    await page.waitForTimeout(1500); // a few more live updates for the screenshot
    await page.screenshot({ path: join(ARTIFACTS, "patient.png"), fullPage: true });

    // Back on the ward, values are current: no age note. Three minutes later (the page's clock
    // moved on, no new data), every value says how old it is.
    await page.evaluate(() => { location.hash = "#/"; });
    const pTime = `[data-testid="tile-${P2}"] [data-testid="tile-p-time"]`;
    await page.waitForSelector(pTime);
    check(!/old\)/.test(await page.textContent(pTime)), `a current probability carries no age note: ${await page.textContent(pTime)}`);
    await page.evaluate(() => { const now = Date.now.bind(Date); Date.now = () => now() + 180000; });
    await page.waitForFunction((sel) => /\(3 min old\)$/.test(document.querySelector(sel)?.textContent || ""), pTime, { timeout: 5000 });
    check(/\(3 min old\)$/.test(await page.textContent(`[data-testid="tile-${P2}"] [data-testid="tile-hr"]`)), "an old heart rate says how old it is");
    check(true, `an old probability says how old it is: ${await page.textContent(pTime)}`);

    check(problems.length === 0, `no console errors or CSP violations (${problems.join(" | ")})`);

    // Receipt-to-socket latency of this run, from the server's histogram.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const record of ["trace", "hr", "prob"]) {
      const buckets = [...metrics.matchAll(new RegExp(`vigil_dashboard_push_latency_seconds_bucket\\{record="${record}",le="([^"]+)"\\} (\\d+)`, "g"))]
        .map((m) => [m[1], Number(m[2])]);
      const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
      const within = (le) => (buckets.find((b) => b[0] === le) || [0, 0])[1];
      log(`push latency ${record}: ${total} pushes, ${within("0.005")} <= 5 ms, ${within("0.05")} <= 50 ms`);
      if (record === "trace") check(total > 0, "trace push latency recorded");
    }
    log(`screenshots in ${ARTIFACTS}`);
  } finally {
    if (browser) await browser.close();
    await feed.stop();
  }
}

run(main);
