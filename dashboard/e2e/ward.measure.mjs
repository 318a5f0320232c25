// Ward at scale, measured (not a pass/fail test): the e2e feed with N patients assigned to one
// clinician and fed every second (heart rate, 4-channel trace at 256 Hz, probabilities every
// 2 s, trends every 2 s), the ward view open in Debian's Chromium for MEASURE_S seconds.
// Reports the browser's frame intervals (requestAnimationFrame; p50/p99/max, frames over
// 50 ms) and long tasks, the WebSocket bytes per second this client received (Chrome DevTools
// Protocol frame events), and the CPU of the feed process, which is the dashboard server plus
// the synthetic feed that publishes into its embedded bus (an upper bound for the dashboard).
//
//   cargo build -p vigil-dashboard --release --example e2e_feed
//   VIGIL_E2E_FEED=target/release/examples/e2e_feed VIGIL_WARD_PATIENTS=100 \
//     node dashboard/e2e/ward.measure.mjs
//
// Prints one JSON line `WARD {...}` and saves a screenshot of the ward in VIGIL_E2E_ARTIFACTS.
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { check, launchBrowser, log, logIn, run, startProcess } from "./harness.mjs";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const FEED = process.env.VIGIL_E2E_FEED || join(ROOT, "target/release/examples/e2e_feed");
const ARTIFACTS = process.env.VIGIL_E2E_ARTIFACTS || join(ROOT, "target/e2e");
const PATIENTS = Number(process.env.VIGIL_WARD_PATIENTS || 100);
const MEASURE_S = Number(process.env.VIGIL_WARD_MEASURE_S || 30);

// utime + stime of a process, in seconds (Linux clock ticks of 10 ms).
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const feed = startProcess(FEED, [], {
    VIGIL_E2E_PATIENTS: String(PATIENTS),
    VIGIL_E2E_LIVE_S: String(MEASURE_S + 120),
  });
  let browser;
  try {
    const url = (await feed.waitLine(/^VIGIL_E2E_URL=/, 120000)).split("=")[1];
    browser = await launchBrowser();
    const { context, page } = browser;
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    let wsBytes = 0, wsFrames = 0;
    cdp.on("Network.webSocketFrameReceived", (e) => { wsBytes += e.response.payloadData.length; wsFrames += 1; });

    await page.goto(url);
    await logIn(page, "alice", "correct horse battery staple");
    await page.waitForSelector(`[data-testid="tile-e2e-patient-${PATIENTS}"]`, { timeout: 60000 });
    const tiles = await page.$$eval('[data-testid^="tile-e2e-patient-"]', (t) => t.length);
    check(tiles === PATIENTS, `ward shows ${tiles} patients`);
    // Let the snapshot settle, then measure a steady window.
    await page.waitForTimeout(5000);
    await page.evaluate(() => {
      window.__ward = { frames: [], longTasks: [] };
      let last = performance.now();
      const tick = (now) => { window.__ward.frames.push(now - last); last = now; requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
      new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__ward.longTasks.push(e.duration); })
        .observe({ type: "longtask", buffered: false });
    });
    const cpu0 = cpuSeconds(feed.child.pid), bytes0 = wsBytes, frames0 = wsFrames, t0 = Date.now();
    await page.waitForTimeout(MEASURE_S * 1000);
    const wall = (Date.now() - t0) / 1000;
    const cpu = (cpuSeconds(feed.child.pid) - cpu0) / wall;
    const { frames, longTasks } = await page.evaluate(() => window.__ward);
    const sorted = frames.slice(1).sort((a, b) => a - b);
    const hrShown = await page.$$eval('[data-testid="tile-hr"]', (t) => t.filter((e) => /\d+ bpm/.test(e.textContent)).length);
    await page.screenshot({ path: join(ARTIFACTS, `ward-${PATIENTS}.png`) });
    const result = {
      patients: PATIENTS,
      measure_s: Number(wall.toFixed(1)),
      frames: sorted.length,
      frame_ms: { p50: +quantile(sorted, 0.5).toFixed(1), p99: +quantile(sorted, 0.99).toFixed(1), max: +sorted[sorted.length - 1].toFixed(1) },
      frames_over_50ms: sorted.filter((f) => f > 50).length,
      long_tasks: longTasks.length,
      long_task_ms_total: +longTasks.reduce((a, b) => a + b, 0).toFixed(0),
      ws_bytes_per_s: Math.round((wsBytes - bytes0) / wall),
      ws_frames_per_s: +((wsFrames - frames0) / wall).toFixed(1),
      feed_process_cores: +cpu.toFixed(3),
      tiles_with_live_hr: hrShown,
    };
    console.log(`WARD ${JSON.stringify(result)}`);
    check(hrShown === PATIENTS, `every tile shows a live heart rate (${hrShown})`);
  } finally {
    if (browser) await browser.close();
    await feed.stop();
  }
}

run(main);
