// qEEG trends panel and the raw EEG page (docs/DASHBOARD.md "Trends"). Plain browser
// JavaScript, no framework: heatmaps are drawn into a canvas, the line charts are uPlot. The
// patient view (app.js) owns the data and calls VigilTrends.render / VigilEegPage.open.
"use strict";

window.VigilTrends = (() => {
  const SPANS_H = [1, 4, 12, 24];
  // CSA colour scale: dB re 1 uV^2/Hz, clamped to [CSA_LO, CSA_HI], on a perceptual
  // dark-blue -> teal -> yellow ramp (viridis stops); "not evaluated" is hatched grey.
  const CSA_LO = -10, CSA_HI = 30;
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const ROW_PX = 2, BINS = 30;
  const AXIS_LEFT = 64; // the uPlot y-axis width below, so every row shares one time axis

  function ramp(stops, f) {
    const x = Math.min(Math.max(f, 0), 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2), t = x - i;
    return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * t));
  }
  const csaColour = (db) => ramp(VIRIDIS, (db - CSA_LO) / (CSA_HI - CSA_LO));
  // Asymmetry (L - R) / (L + R): red = left stronger, blue = right stronger, white = equal.
  const asymColour = (a) => (a >= 0
    ? ramp([[255, 255, 255], [198, 40, 40]], a)
    : ramp([[255, 255, 255], [21, 101, 192]], -a));

  /// Columns to draw for `[from, to)`: the fetched (bucketed) columns, then live intervals
  /// after the last of them.
  function columns(t, from, to) {
    const out = t.columns.filter((c) => c.start_ms + c.duration_ms > from && c.start_ms < to);
    const end = out.length ? out[out.length - 1].start_ms + out[out.length - 1].duration_ms : from;
    for (const c of t.live.values()) if (c.start_ms >= end && c.start_ms < to) out.push(c);
    return out.sort((a, b) => a.start_ms - b.start_ms);
  }

  function hatch(ctx) {
    const p = document.createElement("canvas"); p.width = 6; p.height = 6;
    const g = p.getContext("2d");
    g.fillStyle = "#d5dbe1"; g.fillRect(0, 0, 6, 6);
    g.strokeStyle = "#9aa5b1"; g.beginPath(); g.moveTo(0, 6); g.lineTo(6, 0); g.stroke();
    return ctx.createPattern(p, "repeat");
  }

  /// Draws one heatmap per region plus the asymmetry heatmap; returns the row layout.
  function drawHeatmaps(canvas, cols, regions, from, to, area) {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 800;
    const rowH = BINS * ROW_PX, gap = 16;
    const rows = regions.length + 1;
    const height = rows * (rowH + gap);
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, width, height);
    // The uPlot charts' plotting area, so a time is at the same x in every row.
    const left = area ? area.left : AXIS_LEFT;
    const plotW = area ? area.width : width - AXIS_LEFT - 8;
    const x = (t) => left + ((t - from) / (to - from)) * plotW;
    const nan = hatch(ctx);
    const labels = regions.map((r) => `CSA ${r}`).concat(["asymmetry L-R"]);
    const rowTop = (r) => r * (rowH + gap) + gap - 2;
    ctx.font = "11px sans-serif";
    labels.forEach((label, r) => {
      const top = rowTop(r);
      ctx.fillStyle = "#1b2430"; ctx.fillText(label, left, top - 3);
      ctx.fillStyle = "#5b6775";
      ctx.fillText("30 Hz", 4, top + 9); ctx.fillText("1 Hz", 4, top + rowH);
      ctx.fillStyle = nan; ctx.fillRect(left, top, plotW, rowH);
      for (const c of cols) {
        const x0 = Math.floor(x(c.start_ms)), x1 = Math.ceil(x(c.start_ms + c.duration_ms));
        const values = r < regions.length ? c.csa_db[r] : c.asymmetry;
        if (!values) continue;
        for (let b = 0; b < BINS; b++) {
          const v = values[b];
          const y = top + (BINS - 1 - b) * ROW_PX;
          if (v == null) { ctx.fillStyle = nan; } else {
            const [cr, cg, cb] = r < regions.length ? csaColour(v) : asymColour(v);
            ctx.fillStyle = `rgb(${cr},${cg},${cb})`;
          }
          ctx.fillRect(x0, y, Math.max(x1 - x0, 1), ROW_PX);
        }
      }
    });
    // Row r spans [top, top + height); bin b (b = 0 at 1 Hz, top bin at the top) is binPx high.
    return { left, plotW, binPx: ROW_PX, rows: labels.map((label, r) => ({ label, top: rowTop(r), height: rowH })) };
  }

  /// Semi-log amplitude scale of aEEG: linear 0-10 uV, logarithmic 10-100 uV and above.
  const semiLog = {
    distr: 100,
    fwd: (v) => (v <= 10 ? v / 10 : 1 + Math.log10(v / 10)),
    bwd: (v) => (v <= 1 ? v * 10 : 10 * Math.pow(10, v - 1)),
    range: () => [0, 100],
  };

  function lineData(cols, from, to) {
    const xs = [], s = { lmin: [], lmax: [], rmin: [], rmax: [], bsr: [], idx: [] };
    for (const c of cols) {
      xs.push((c.start_ms + c.duration_ms / 2) / 1000);
      s.lmin.push(c.left.aeeg[0]); s.lmax.push(c.left.aeeg[1]);
      s.rmin.push(c.right.aeeg[0]); s.rmax.push(c.right.aeeg[1]);
      s.bsr.push(c.global.bsr[0]); s.idx.push(c.asymmetry_index[0]);
    }
    if (!xs.length) { xs.push(from / 1000, to / 1000); for (const k in s) s[k].push(null, null); }
    return { xs, s };
  }

  function aeegChart(container, width, from, to, data, onClick, onDraw) {
    const { xs, s } = data;
    const opts = {
      width, height: 170,
      scales: { x: { time: true, range: [from / 1000, to / 1000] }, y: semiLog },
      axes: [{}, { size: AXIS_LEFT, splits: () => [0, 5, 10, 25, 50, 100], label: "aEEG \u00b5V" }],
      series: [{},
        { label: "left min", stroke: "#c62828", width: 1, spanGaps: false },
        { label: "left max", stroke: "#c62828", width: 1, spanGaps: false },
        { label: "right min", stroke: "#1565c0", width: 1, spanGaps: false },
        { label: "right max", stroke: "#1565c0", width: 1, spanGaps: false }],
      bands: [{ series: [2, 1], fill: "rgba(198,40,40,0.25)" }, { series: [4, 3], fill: "rgba(21,101,192,0.25)" }],
      hooks: {
        ready: [(u) => u.over.addEventListener("click", (e) => onClick(u.posToVal(e.offsetX, "x") * 1000))],
        // uPlot lays out its axes while drawing: only then is the plotting area known.
        draw: [onDraw],
      },
    };
    return new uPlot(opts, [xs, s.lmin, s.lmax, s.rmin, s.rmax], container);
  }

  function bsrChart(container, width, from, to, data, onClick) {
    const { xs, s } = data;
    const opts = {
      width, height: 150,
      scales: { x: { time: true, range: [from / 1000, to / 1000] }, y: { range: [-1, 1] }, pct: { range: [0, 100] } },
      axes: [{}, { size: AXIS_LEFT, label: "asym. index" }, { side: 1, scale: "pct", label: "BSR %", grid: { show: false } }],
      series: [{},
        { label: "asymmetry index (L-R)", stroke: "#6a1b9a", width: 1, spanGaps: false },
        { label: "burst suppression %", stroke: "#1b2430", width: 1.5, spanGaps: false, scale: "pct" }],
      hooks: { ready: [(u) => u.over.addEventListener("click", (e) => onClick(u.posToVal(e.offsetX, "x") * 1000))] },
    };
    return new uPlot(opts, [xs, s.idx, s.bsr], container);
  }

  const MONTAGE_TEXT = {
    double_banana: "double banana (bipolar labels)",
    referential_to_bipolar: "double banana, re-referenced from referential 10-20 labels",
    configured: "regions from the configured map",
    channel_groups: "no known montage: all channels as one region",
  };

  /// Draws the panel for `t` (a patient's trend data) over `[from, to)` into `els`.
  function render(els, t, from, to, onClick) {
    const cols = columns(t, from, to);
    const last = cols.length ? cols[cols.length - 1] : null;
    const regions = last ? last.regions : [];
    els.montage.textContent = last
      ? `Regions: ${MONTAGE_TEXT[last.montage] || last.montage} (${regions.join(", ")})`
      : "no trends yet";
    els.montage.dataset.montage = last ? last.montage : "";
    const width = els.canvas.clientWidth || 800;
    const data = lineData(cols, from, to);
    for (const c of t.charts || []) c.destroy();
    els.aeeg.replaceChildren(); els.bsr.replaceChildren();
    const drawRows = (u) => {
      const dpr = window.devicePixelRatio || 1;
      const layout = drawHeatmaps(els.canvas, cols, regions, from, to, { left: u.bbox.left / dpr, width: u.bbox.width / dpr });
      // Read-only, for the browser tests: the span (ms) and layout (CSS px) of what was drawn,
      // so a test can map a time to x on the pixels it reads in the same task.
      els.canvas.dataset.layout = JSON.stringify({ from, to, ...layout });
      els.canvas.onclick = (e) => {
        const f = (e.offsetX - layout.left) / layout.plotW;
        if (f >= 0 && f <= 1) onClick(from + f * (to - from));
      };
    };
    t.charts = [aeegChart(els.aeeg, width, from, to, data, onClick, drawRows), bsrChart(els.bsr, width, from, to, data, onClick)];
    els.legend.textContent = `CSA colour: ${CSA_LO} dB (dark blue) to ${CSA_HI} dB (yellow) re 1 \u00b5V\u00b2/Hz; asymmetry: red = left stronger, blue = right stronger; hatched = not evaluated. Click any time to open the raw EEG there.`;
  }

  /// Bucket length for a span drawn `px` wide: a whole number of 2 s intervals.
  function bucketSeconds(spanH, px) {
    return Math.max(2, 2 * Math.ceil((spanH * 3600) / Math.max(px, 100) / 2));
  }

  function emptyData() { return { columns: [], live: new Map(), charts: [] }; }

  /// Whether the live intervals start more than one interval after the fetched columns end:
  /// storage had not stored what the live feed already sent when the columns were fetched,
  /// and the time between would be drawn as "no data".
  function gapBeforeLive(t) {
    let first = null;
    for (const c of t.live.values()) if (first === null || c.start_ms < first.start_ms) first = c;
    if (first === null) return false;
    const last = t.columns[t.columns.length - 1];
    return !last || last.start_ms + last.duration_ms + first.duration_ms < first.start_ms;
  }

  return { SPANS_H, render, bucketSeconds, emptyData, gapBeforeLive, csaColour, asymColour };
})();

window.VigilEegPage = (() => {
  // Second-order sections (RBJ cookbook), run forward over the page with a lead-in so their
  // start-up transient falls before the page.
  function biquad(kind, f0, fs, q) {
    const w = (2 * Math.PI * f0) / fs, cw = Math.cos(w), alpha = Math.sin(w) / (2 * q);
    let b;
    if (kind === "hp") b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2];
    else if (kind === "lp") b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2];
    else b = [1, -2 * cw, 1]; // notch
    const a = [1 + alpha, -2 * cw, 1 - alpha];
    return { b: b.map((v) => v / a[0]), a: [1, a[1] / a[0], a[2] / a[0]] };
  }

  function filter(samples, sections) {
    let y = samples;
    for (const s of sections) {
      const out = new Array(y.length);
      let x1 = 0, x2 = 0, y1 = 0, y2 = 0;
      for (let i = 0; i < y.length; i++) {
        const x0 = y[i];
        if (x0 == null) { out[i] = null; x1 = x2 = y1 = y2 = 0; continue; } // a gap restarts it
        const v = s.b[0] * x0 + s.b[1] * x1 + s.b[2] * x2 - s.a[1] * y1 - s.a[2] * y2;
        x2 = x1; x1 = x0; y2 = y1; y1 = v; out[i] = v;
      }
      y = out;
    }
    return y;
  }

  /// Stored raw EEG (history/eeg) of `[from, to)` re-referenced, filtered and cut to the page.
  function prepare(chunks, settings, pageFrom, pageTo) {
    if (!chunks.length) return null;
    const fs = chunks[0].fs, channels = chunks[0].channels;
    const xs = [], rows = channels.map(() => []);
    for (const c of chunks) {
      if (c.fs !== fs || c.channels.join() !== channels.join()) continue;
      for (let i = 0; i < c.samples[0].length; i++) {
        xs.push(c.start_ms + (i * 1000) / fs);
        channels.forEach((_, ch) => rows[ch].push(c.samples[ch][i]));
      }
    }
    if (settings.montage === "average") {
      for (let i = 0; i < xs.length; i++) {
        let sum = 0, n = 0;
        for (const r of rows) if (r[i] != null) { sum += r[i]; n++; }
        for (const r of rows) if (r[i] != null) r[i] -= sum / n;
      }
    }
    const sections = [];
    if (settings.hp > 0) sections.push(biquad("hp", settings.hp, fs, Math.SQRT1_2));
    if (settings.lp > 0 && settings.lp < fs / 2) sections.push(biquad("lp", settings.lp, fs, Math.SQRT1_2));
    if (settings.notch > 0 && settings.notch < fs / 2) sections.push(biquad("notch", settings.notch, fs, 30));
    const filtered = rows.map((r) => filter(r, sections));
    const keep = xs.map((t, i) => (t >= pageFrom && t < pageTo ? i : -1)).filter((i) => i >= 0);
    return { fs, channels, xs: keep.map((i) => xs[i] / 1000), rows: filtered.map((r) => keep.map((i) => r[i])) };
  }

  function draw(container, page, spacing) {
    const n = page.channels.length;
    const ys = page.rows.map((r, ch) => r.map((v) => (v == null ? null : v + (n - 1 - ch) * spacing)));
    const offsets = page.channels.map((_, ch) => (n - 1 - ch) * spacing);
    container.replaceChildren();
    return new uPlot({
      width: Math.max(400, container.clientWidth || 900), height: Math.max(200, 36 * n + 60),
      legend: { show: false }, cursor: { show: false },
      scales: { x: { time: true }, y: { range: [-spacing, n * spacing] } },
      axes: [{}, { splits: () => offsets, values: (u, splits) => splits.map((s) => page.channels[n - 1 - Math.round(s / spacing)] || ""), size: 70 }],
      series: [{}].concat(page.channels.map((label) => ({ label, stroke: "#1b2430", width: 1, spanGaps: false }))),
    }, [page.xs].concat(ys), container);
  }

  return { prepare, draw, filter, biquad };
})();
