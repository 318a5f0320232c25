// The README's path in a real browser: `vigil demo` (every stage in one process), then a
// clinician logs in with the login the demo printed, sees the simulated patients live, waits
// for an alert raised by the pipeline itself (synthetic burst in real EEG -> model -> alert),
// opens the patient and acknowledges it; the demo's terminal reports the acknowledgement.
//
//   VIGIL_BIN=target/debug/vigil node dashboard/e2e/demo.e2e.mjs
//
// Screenshots go to VIGIL_E2E_ARTIFACTS (default target/e2e/).
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { check, colouredPixels, launchBrowser, log, logIn, run, startProcess } from "./harness.mjs";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const VIGIL = process.env.VIGIL_BIN || join(ROOT, "target/debug/vigil");
const ARTIFACTS = process.env.VIGIL_E2E_ARTIFACTS || join(ROOT, "target/e2e");
const PATIENTS = ["demo-patient-1", "demo-patient-2", "demo-patient-3"];
const SPEED = 20;

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const demo = startProcess(VIGIL, ["demo"], {
    VIGIL__DEMO__SPEED: String(SPEED),
    VIGIL__DEMO__PATIENTS: String(PATIENTS.length),
    VIGIL__DEMO__LISTEN: "127.0.0.1:0",
    VIGIL__DASHBOARD__LISTEN: "127.0.0.1:0",
    VIGIL__STORAGE__LISTEN: "127.0.0.1:0",
    VIGIL__MODELS__DIR: join(ROOT, "models"),
    VIGIL__MODELS__MANIFEST: join(ROOT, "models/manifest.toml"),
  });
  let browser;
  try {
    const url = (await demo.waitLine(/^\s+Dashboard\s+http:\/\//, 300000)).trim().split(/\s+/)[1];
    const password = (await demo.waitLine(/log in as demo \//)).trim().split("/ ")[1];
    log(`demo dashboard at ${url}`);
    browser = await launchBrowser();
    const { page, problems } = browser;

    await page.goto(url);
    // Before login the page's session probe gets its 401 (then shows the form) and Chromium
    // asks for a favicon (404): both expected; only problems from here on count.
    await page.waitForSelector("#login-form", { state: "visible" });
    await page.waitForLoadState("networkidle");
    problems.length = 0;
    await logIn(page, "demo", password);
    for (const p of PATIENTS) await page.waitForSelector(`[data-testid="tile-${p}"]`, { timeout: 15000 });
    check(true, "ward shows the demo's patients after logging in with the printed password");

    // Heart rate arrives within seconds; the first alert (patient 1's burst) within ~1 min.
    await page.waitForFunction((sel) => /\d+ bpm/.test(document.querySelector(sel)?.textContent || ""),
      `[data-testid="tile-${PATIENTS[0]}"] [data-testid="tile-hr"]`, { timeout: 30000 });
    check(true, "live heart rate on the ward");
    await page.waitForSelector('[data-testid="alarm-banner"]:not([hidden])', { timeout: 120000 });
    const banner = await page.textContent('[data-testid="alarm-banner"]');
    const alarmed = PATIENTS.find((p) => banner.includes(p));
    check(alarmed !== undefined, `alarm banner names a patient: ${banner.trim()}`);
    await page.screenshot({ path: join(ARTIFACTS, "demo-ward.png") });

    await page.click(`[data-testid="tile-${alarmed}"]`);
    await page.waitForSelector('[data-testid="patient-title"]', { state: "visible" });
    await page.waitForSelector('[data-testid="eeg-chart"] canvas', { timeout: 30000 });
    check(true, `patient view of ${alarmed} with live EEG`);
    // Live updates re-render the alert list, so address the button by its alert id.
    await page.waitForSelector('[data-testid="ack"]', { timeout: 15000 });
    const alertId = await page.getAttribute('[data-testid="ack"]', "data-alert");
    await page.click(`[data-testid="ack"][data-alert="${alertId}"]`);
    // The row then says "acknowledged by demo", or is gone when the alert had also resolved
    // (an alert closes once resolved and acknowledged).
    try {
      await page.waitForFunction((id) => {
        const row = document.querySelector(`[data-testid="alert-row"][data-alert="${id}"]`);
        return !row || /acknowledged by demo/.test(row.textContent);
      }, alertId, { timeout: 30000 });
    } catch (err) {
      await page.screenshot({ path: join(ARTIFACTS, "demo-ack-failed.png"), fullPage: true });
      const rows = await page.$$eval('[data-testid="alert-row"]', (rs) => rs.map((r) => `${r.dataset.alert}: ${r.textContent}`));
      log(`alert ${alertId} not shown as acknowledged; rows: ${rows.join(" | ")}; demo said: ${demo.lines.filter((l) => /alert|ALERT/.test(l)).join(" | ")}`);
      throw err;
    }
    check(true, "alert shown as acknowledged (or closed) in the page");
    const line = await demo.waitLine(new RegExp(`^${alarmed}\\s+alert acknowledged: .*by demo`), 15000);
    check(true, `the acknowledgement went through the bus to the demo's terminal: ${line.trim()}`);
    // The demo runs faster than real time, so its trend intervals carry times ahead of the
    // clock: the panel's span must end at the newest interval, not at "now", or it stays empty.
    await page.locator('[data-testid="trends-canvas"]').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => document.getElementById("trends-canvas").width > 0);
    let coloured = 0;
    for (let i = 0; i < 30 && coloured <= 6000; i++) {
      await page.waitForTimeout(1000);
      coloured = await colouredPixels(page, "trends-canvas");
    }
    check(coloured > 6000, `live CSA heatmaps drawn at ${SPEED}x real time (${coloured} coloured pixels)`);
    await page.waitForTimeout(1500);
    await page.screenshot({ path: join(ARTIFACTS, "demo-patient.png"), fullPage: true });
    check(problems.length === 0, `no console errors or CSP violations (${problems.join(" | ")})`);
    log(`screenshots in ${ARTIFACTS}`);
  } finally {
    if (browser) await browser.close();
    demo.child.kill("SIGTERM");
  }
}

run(main);
