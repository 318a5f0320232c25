// Shared by the browser tests: logging/checks, a child process whose stdout lines can be
// awaited, and Debian's Chromium (never a downloaded browser) via playwright-core.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.VIGIL_CHROMIUM || "/usr/bin/chromium";
const started = Date.now();

export const log = (msg) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  log(`ok: ${msg}`);
}

// Spawns `cmd` and collects its stdout lines; `waitLine(re, ms)` resolves with the first line
// (already printed or still to come) matching `re`; `stop()` ends it.
export function startProcess(cmd, args = [], env = {}) {
  const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, ...env } });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    for (const w of [...waiters]) if (w.re.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
  });
  const waitLine = (re, ms = 30000) => new Promise((res, rej) => {
    const hit = lines.find((l) => re.test(l));
    if (hit) return res(hit);
    const w = { re, resolve: res };
    waiters.push(w);
    setTimeout(() => rej(new Error(`${cmd} printed no line matching ${re} in ${ms} ms`)), ms);
  });
  child.on("exit", (code, signal) => { if (code) log(`${cmd} exited with ${code ?? signal}`); });
  const exited = new Promise((res) => child.once("exit", () => res("exited")));
  // Closes its stdin (the e2e feed runs until it closes), sends SIGTERM, then SIGKILL if it has
  // not exited after `ms`: a process still draining must not outlive the test and load the
  // machine for the next one.
  const stop = async (ms = 20000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const since = Date.now();
    child.stdin.end();
    child.kill("SIGTERM");
    let timer;
    const late = new Promise((res) => { timer = setTimeout(() => res("late"), ms); });
    const how = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (how === "late") {
      child.kill("SIGKILL");
      await exited;
    }
    log(`${cmd} ${how === "late" ? `still running ${ms / 1000} s after SIGTERM: killed` : `stopped ${((Date.now() - since) / 1000).toFixed(1)} s after SIGTERM`}`);
  };
  return { child, lines, waitLine, stop };
}

// A headless Chromium with a throwaway profile; `close()` removes the profile.
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "vigil-e2e-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // The console's "Failed to load resource" lines carry no URL: name them here.
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${new URL(r.url()).pathname}`); });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, problems, close };
}

// Fills and submits the login form.
export async function logIn(page, username, password) {
  await page.waitForSelector("#login-form", { state: "visible" });
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("#login-form button[type=submit]");
}

// Saturated pixels of a canvas: the trends heatmaps' viridis colours (background, text and the
// not-evaluated hatch are grey).
export function colouredPixels(page, canvasId) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let coloured = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
    }
    return coloured;
  }, canvasId);
}

export function run(main) {
  main().then(() => { log("PASS"); process.exit(0); }, (err) => { console.error(err); log("FAIL"); process.exit(1); });
}

/** Presses the element's centre, holds for `holdMs` (longer than the page's 1 s redraw), then
 * releases: a click a live update must not swallow by replacing the element under the pointer. */
export async function heldClick(page, selector, holdMs = 1500) {
  const target = page.locator(selector);
  await target.scrollIntoViewIfNeeded();
  const box = await target.boundingBox();
  if (!box) throw new Error(`${selector} is not visible`);
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.waitForTimeout(holdMs);
  await page.mouse.up();
}
