// Vigil clinician dashboard: ward overview + patient view over one WebSocket per view.
// Plain browser JavaScript, no framework; charts with uPlot. Served under a CSP without
// inline scripts: everything is wired up here.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SIGNAL_STALE_MS = 10000;      // no samples for longer = shown as "no signal"
  const EEG_WINDOW_S = 10;            // seconds of EEG on screen
  const LIVE_PROB_HOURS = 1;          // history fetched when a patient view opens
  const KIND_LABEL = {
    seizure: "Seizure", sustained_seizure_burden: "Sustained seizure burden",
    tachycardia: "Tachycardia", bradycardia: "Bradycardia", signal_loss: "Signal loss",
  };

  const app = {
    session: null,
    patients: [],
    data: new Map(),        // patient id -> PatientData
    sockets: {},            // "ward" | "patient" -> LiveSocket
    route: { view: "ward", patient: null },
    soundOn: false,
    audio: null,
    charts: {},
    ackPending: new Set(),
  };

  // ---------------------------------------------------------------- per-patient data
  function patientData(id) {
    let d = app.data.get(id);
    if (!d) {
      d = {
        id,
        epoch: null,
        seen: new Set(),            // sequence numbers applied (two sockets may carry one update)
        prob: new Map(),            // t_ms -> p | null (null = not evaluated)
        provisional: null,          // {start_ms, step_ms, p}: lower bound of points not final yet
        hr: new Map(),              // t_ms -> bpm
        trace: null,                // { channels, fs, chunks: [{start_ms, samples}] }
        alerts: new Map(),          // alert_id -> view (open alerts)
        events: new Map(),          // alert_id+transition+at -> event (history list)
        lastSignalArrival: 0,       // when the last trace/HR update arrived (browser clock)
        trends: VigilTrends.emptyData(), // qEEG trend columns (history) and live intervals
      };
      app.data.set(id, d);
    }
    return d;
  }

  function applyAlertEvent(d, e) {
    d.events.set(e.alert_id + e.transition + e.at_ms, e);
    let a = d.alerts.get(e.alert_id);
    if (e.transition === "raised") {
      if (!a) {
        d.alerts.set(e.alert_id, {
          alert_id: e.alert_id, kind: e.kind, onset_ms: e.onset_ms, raised_ms: e.at_ms,
          escalated: false, acknowledged_by: null, acknowledged_ms: null, resolved_ms: null,
          evidence: e.evidence,
        });
      }
      return;
    }
    if (!a) return;
    if (e.transition === "acknowledged" && !a.acknowledged_by) {
      a.acknowledged_by = e.by; a.acknowledged_ms = e.at_ms;
      app.ackPending.delete(e.alert_id);
    }
    if (e.transition === "escalated") a.escalated = true;
    if (e.transition === "resolved") a.resolved_ms = e.at_ms;
    // Final values put the seizure's start earlier than the early raise said.
    if (e.transition === "onset_refined") a.onset_ms = Math.min(a.onset_ms, e.onset_ms);
    if (e.evidence && (e.evidence.p != null || e.evidence.bpm != null || e.evidence.burden != null)) a.evidence = e.evidence;
    if (a.acknowledged_by && a.resolved_ms) d.alerts.delete(e.alert_id);
  }

  function addProbability(d, rec) {
    rec.p.forEach((p, i) => d.prob.set(rec.start_ms + i * rec.step_ms, p));
  }

  function applyUpdate(msg) {
    const d = patientData(msg.patient_id);
    if (d.seen.has(msg.seq)) return false;
    d.seen.add(msg.seq);
    if (d.seen.size > 20000) {
      const keep = [...d.seen].sort((a, b) => a - b).slice(-10000);
      d.seen = new Set(keep);
    }
    const data = msg.data;
    switch (msg.type) {
      case "prob": addProbability(d, data); break;
      // Each provisional record replaces the last: it carries every point not final yet.
      case "prob_provisional": d.provisional = data; break;
      case "hr":
        data.points.forEach(([t, bpm]) => d.hr.set(t, bpm));
        d.lastSignalArrival = Date.now();
        break;
      case "trace": {
        if (!d.trace || d.trace.channels.join() !== data.channels.join() || d.trace.fs !== data.fs) {
          d.trace = { channels: data.channels, fs: data.fs, chunks: [] };
        }
        // Keyed by start time: a chunk sent again after a reconnect replaces itself.
        const chunks = new Map(d.trace.chunks.map((c) => [c.start_ms, c]));
        chunks.set(data.start_ms, { start_ms: data.start_ms, samples: data.samples });
        const newest = Math.max(...[...chunks.values()].map((c) => c.start_ms + (c.samples[0].length / data.fs) * 1000));
        d.trace.chunks = [...chunks.values()]
          .filter((c) => c.start_ms + (c.samples[0].length / data.fs) * 1000 > newest - EEG_WINDOW_S * 1000)
          .sort((a, b) => a.start_ms - b.start_ms);
        d.lastSignalArrival = Date.now();
        break;
      }
      case "alert": applyAlertEvent(d, data); break;
      case "trends":
        d.trends.live.set(data.start_ms, data);
        for (const t of d.trends.live.keys()) if (t < data.start_ms - 24 * 3600 * 1000) d.trends.live.delete(t);
        d.trends.dirty = true;
        refillTrendsGap(d);
        break;
      default: return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- WebSocket
  class LiveSocket {
    constructor(name, patients, traces) {
      this.name = name; this.patients = patients; this.traces = traces;
      this.lastSeq = new Map(); this.epoch = null; this.closed = false; this.retryMs = 500;
      this.connect();
    }
    url() {
      const q = new URLSearchParams({ patients: this.patients.join(","), traces: String(this.traces) });
      if (this.epoch && this.lastSeq.size) {
        q.set("epoch", this.epoch);
        q.set("after", this.patients.map((p) => this.lastSeq.get(p) ?? "").join(","));
      }
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      return `${proto}//${location.host}/api/live?${q}`;
    }
    connect() {
      if (this.closed || !this.patients.length) return;
      const ws = new WebSocket(this.url());
      this.ws = ws;
      ws.onopen = () => { this.retryMs = 500; setConnection(true); };
      ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
      ws.onclose = (ev) => {
        if (this.closed) return;
        setConnection(false, ev.code === 4401 ? "session expired" : "reconnecting");
        if (ev.code === 4401) { showLogin(); return; }
        setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 10000);
      };
    }
    onMessage(msg) {
      if (msg.type === "snapshot") {
        this.epoch = msg.epoch;
        const d = patientData(msg.patient_id);
        // Sequence numbers restart with the server (new epoch).
        if (d.epoch !== msg.epoch) { d.seen.clear(); d.epoch = msg.epoch; }
        if (!msg.resumed) d.alerts.clear();
        for (const a of msg.open_alerts) {
          const known = d.alerts.get(a.alert_id);
          d.alerts.set(a.alert_id, known && known.acknowledged_by && !a.acknowledged_by ? known : a);
        }
        this.lastSeq.set(msg.patient_id, msg.last_seq);
        scheduleRender();
        return;
      }
      if (msg.type === "snapshot_end") return;
      if (typeof msg.seq === "number") {
        const last = this.lastSeq.get(msg.patient_id) || 0;
        if (msg.seq > last) this.lastSeq.set(msg.patient_id, msg.seq);
      }
      if (applyUpdate(msg)) scheduleRender();
    }
    close() { this.closed = true; if (this.ws) this.ws.close(1000, "view closed"); }
  }

  function setConnection(up, why) {
    const el = $("conn");
    el.textContent = up ? "live" : (why || "disconnected");
    el.className = "conn " + (up ? "conn-up" : "conn-down");
  }

  // ---------------------------------------------------------------- API
  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (app.session && options.method && options.method !== "GET") headers["X-CSRF-Token"] = app.session.csrf_token;
    const res = await fetch(path, {
      method: options.method || "GET", headers, credentials: "same-origin",
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error(body.detail || `${res.status} ${res.statusText}`);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  const msToNs = (ms) => (BigInt(Math.round(ms)) * 1000000n).toString();

  async function loadHistory(id, kind, fromMs, toMs) {
    const d = patientData(id);
    let cursor = null;
    for (let page = 0; page < 20; page++) {
      const q = new URLSearchParams({ from_ns: msToNs(fromMs), to_ns: msToNs(toMs), limit: "2000" });
      if (cursor) q.set("cursor", cursor);
      const res = await api(`/api/patients/${encodeURIComponent(id)}/history/${kind}?${q}`);
      for (const item of res.items) {
        if (kind === "prob") addProbability(d, item);
        else if (kind === "hr") d.hr.set(item[0], item[1]);
        else if (kind === "alerts") d.events.set(item.alert_id + item.transition + item.at_ms, item);
      }
      cursor = res.next_cursor;
      if (!cursor) break;
    }
    scheduleRender();
  }

  // ---------------------------------------------------------------- qEEG trends
  const trendView = { spanH: 1, renderedAt: 0, page: null, plot: null };

  // The span ends now, or at the newest interval when the data runs ahead of the clock: a
  // replay or `vigil demo` faster than real time stamps signal time, not wall time.
  function trendsEnd(d) {
    let end = Date.now();
    for (const c of d.trends.live.values()) end = Math.max(end, c.start_ms + c.duration_ms);
    return end;
  }

  async function loadTrends(id) {
    const d = patientData(id);
    const now = trendsEnd(d), from = now - trendView.spanH * 3600 * 1000;
    const width = $("trends-canvas").clientWidth || 800;
    const q = new URLSearchParams({
      from_ns: msToNs(from), to_ns: msToNs(now), limit: "5000",
      bucket_s: String(VigilTrends.bucketSeconds(trendView.spanH, width - 72)),
    });
    const res = await api(`/api/patients/${encodeURIComponent(id)}/history/trends?${q}`);
    d.trends.columns = res.items;
    d.trends.dirty = true;
    if (!VigilTrends.gapBeforeLive(d.trends)) trendsRefill.delayMs = TRENDS_REFILL_MS;
    scheduleRender();
  }

  // Storage stores what the live feed sends a little later, so columns fetched when a patient
  // is opened can end before the socket's first live interval. The gap is fetched again soon,
  // backing off while storage catches up (at most to the periodic reload's minute).
  const TRENDS_REFILL_MS = 2000;
  const trendsRefill = { timer: null, delayMs: TRENDS_REFILL_MS };
  function refillTrendsGap(d) {
    const id = d.id;
    if (trendsRefill.timer || app.route.patient !== id || !VigilTrends.gapBeforeLive(d.trends)) return;
    trendsRefill.timer = setTimeout(() => {
      trendsRefill.timer = null;
      if (app.route.patient !== id) return;
      trendsRefill.delayMs = Math.min(trendsRefill.delayMs * 2, 60000);
      loadTrends(id).catch(() => {});
    }, trendsRefill.delayMs);
  }

  function renderTrends(d) {
    // Redrawn when data came in, and every 10 s so the time axis moves with the clock.
    const now = Date.now();
    if (!d.trends.dirty && now - trendView.renderedAt < 10000) return;
    d.trends.dirty = false; trendView.renderedAt = now;
    for (const b of document.querySelectorAll(".span-button")) b.classList.toggle("active", Number(b.dataset.span) === trendView.spanH);
    const end = trendsEnd(d);
    VigilTrends.render({
      canvas: $("trends-canvas"), aeeg: $("trends-aeeg"), bsr: $("trends-bsr"),
      montage: $("trends-montage"), legend: $("trends-legend"),
    }, d.trends, end - trendView.spanH * 3600 * 1000, end, (t) => openEegPage(d.id, t));
  }

  // ---------------------------------------------------------------- stored EEG page
  function eegPageSettings() {
    return {
      len: Number($("eeg-page-len").value), montage: $("eeg-page-montage").value,
      spacing: Number($("eeg-page-spacing").value), hp: Number($("eeg-page-hp").value),
      lp: Number($("eeg-page-lp").value), notch: Number($("eeg-page-notch").value),
    };
  }

  function closeEegPage() {
    $("eeg-page").hidden = true;
    trendView.page = null;
    if (trendView.plot) { trendView.plot.destroy(); trendView.plot = null; }
  }

  async function openEegPage(id, atMs) {
    const s = eegPageSettings();
    const from = Math.round(atMs - (s.len * 1000) / 2);
    trendView.page = { id, from };
    $("eeg-page").hidden = false;
    $("eeg-page-time").textContent = `${clock(from)} (${s.len} s)`;
    $("eeg-page-time").dataset.fromMs = String(from);
    $("eeg-page-status").textContent = "loading";
    const lead = 2000; // filters settle before the page starts
    try {
      const q = new URLSearchParams({ from_ns: msToNs(from - lead), to_ns: msToNs(from + s.len * 1000), limit: "2000" });
      const res = await api(`/api/patients/${encodeURIComponent(id)}/history/eeg?${q}`);
      const page = VigilEegPage.prepare(res.items, s, from, from + s.len * 1000);
      if (!page || !page.xs.length) {
        $("eeg-page-chart").replaceChildren(el("p", { class: "not-evaluated", text: "no stored EEG at this time" }));
        $("eeg-page-status").textContent = "no stored EEG";
        return;
      }
      // Kept apart from app.charts: those are rebuilt on every resize, this page is not.
      if (trendView.plot) trendView.plot.destroy();
      trendView.plot = VigilEegPage.draw($("eeg-page-chart"), page, s.spacing);
      const filters = [s.hp ? `high-pass ${s.hp} Hz` : null, s.lp ? `low-pass ${s.lp} Hz` : null, s.notch ? `notch ${s.notch} Hz` : null].filter(Boolean);
      $("eeg-page-status").textContent = `${page.channels.length} channels at ${page.fs} Hz, ${s.montage === "average" ? "average reference" : "as recorded"}, ${filters.join(", ") || "unfiltered"}; ${s.spacing} \u00b5V between baselines`;
    } catch (err) {
      $("eeg-page-status").textContent = `EEG: ${err.message}`;
    }
  }

  function oldest(map, fallback) {
    let min = Infinity;
    for (const t of map.keys()) if (t < min) min = t;
    return Number.isFinite(min) ? min : fallback;
  }

  // ---------------------------------------------------------------- alarm sound
  function beep() {
    if (!app.audio) return;
    const ctx = app.audio, osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 880; osc.type = "square";
    gain.gain.setValueAtTime(0.0001, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, ctx.currentTime + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.4);
    osc.connect(gain).connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.45);
  }
  setInterval(() => { if (app.soundOn && unacknowledged().length) beep(); }, 2000);

  function toggleSound() {
    app.soundOn = !app.soundOn;
    if (app.soundOn && !app.audio) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (Ctx) app.audio = new Ctx();
    }
    if (app.audio && app.audio.state === "suspended") app.audio.resume();
    const b = $("sound");
    b.textContent = app.soundOn ? "Alarm sound: on" : "Alarm sound: OFF";
    b.className = app.soundOn ? "sound-on" : "sound-off";
    b.setAttribute("aria-pressed", String(app.soundOn));
  }

  // ---------------------------------------------------------------- summaries
  function unacknowledged() {
    const out = [];
    for (const id of app.patients) {
      for (const a of patientData(id).alerts.values()) if (!a.acknowledged_by) out.push([id, a]);
    }
    return out;
  }

  function latestProbability(d) {
    let t = -Infinity, p = null;
    for (const [k, v] of d.prob) if (k > t) { t = k; p = v; }
    return Number.isFinite(t) ? { t, p } : null;
  }

  // The provisional lower bound after the last final point, as [t_ms, p | null] pairs.
  function provisionalSeries(d) {
    const pr = d.provisional;
    if (!pr) return [];
    const lastFinal = (latestProbability(d) || { t: -Infinity }).t;
    return pr.p.map((p, i) => [pr.start_ms + i * pr.step_ms, p]).filter(([t]) => t > lastFinal);
  }

  // The newest evaluated provisional point after the last final one: "p >= value so far".
  function latestProvisional(d) {
    const evaluated = provisionalSeries(d).filter(([, p]) => p != null);
    if (!evaluated.length) return null;
    const [t, p] = evaluated[evaluated.length - 1];
    return { t, p, max: Math.max(...evaluated.map(([, v]) => v)) };
  }

  // " (3 min old)" when a value's own time is over a minute before now: a tile never shows an
  // old value as if it were current (final probabilities trail the signal by up to a window).
  function ageNote(t) {
    const age = (Date.now() - t) / 1000;
    if (!(age >= 60)) return "";
    return age < 120 ? ` (${Math.round(age)} s old)` : ` (${Math.round(age / 60)} min old)`;
  }

  function latestHr(d) {
    let t = -Infinity, bpm = null;
    for (const [k, v] of d.hr) if (k > t) { t = k; bpm = v; }
    return Number.isFinite(t) ? { t, bpm } : null;
  }

  function signalStatus(d) {
    const lost = [...d.alerts.values()].some((a) => a.kind === "signal_loss" && !a.resolved_ms);
    if (lost) return { text: "SIGNAL LOSS", cls: "stale", bad: true };
    if (!d.lastSignalArrival) return { text: "no signal received", cls: "stale", bad: true };
    const age = Date.now() - d.lastSignalArrival;
    if (age > SIGNAL_STALE_MS) return { text: `no signal for ${Math.round(age / 1000)} s`, cls: "stale", bad: true };
    return { text: "receiving", cls: "", bad: false };
  }

  function worstAlert(d) {
    let worst = null, rank = -1;
    for (const a of d.alerts.values()) {
      const r = a.acknowledged_by ? (a.resolved_ms ? 0 : 1) : (a.escalated ? 3 : 2);
      if (r > rank) { rank = r; worst = a; }
    }
    return worst ? { alert: worst, rank } : null;
  }

  function severity(d) {
    const w = worstAlert(d);
    if (w && w.rank === 3) return 4;
    if (w && w.rank === 2) return 3;
    if (w && w.rank === 1) return 2;
    if (signalStatus(d).bad) return 1;
    return 0;
  }

  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  const fmtP = (p) => (p == null ? null : p.toFixed(2));

  function alertState(a) {
    if (a.acknowledged_by) return `acknowledged by ${a.acknowledged_by}` + (a.resolved_ms ? ", resolved" : ", ongoing");
    return (a.escalated ? "ESCALATED, " : "") + "UNACKNOWLEDGED" + (a.resolved_ms ? " (resolved)" : "");
  }

  function evidenceText(e) {
    if (!e) return "";
    const parts = [];
    if (e.p != null) parts.push(`p ${e.p.toFixed(2)}`);
    if (e.burden != null) parts.push(`burden ${(e.burden * 100).toFixed(0)}%`);
    if (e.bpm != null) parts.push(`${Math.round(e.bpm)} bpm`);
    return parts.join(", ");
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  // One element per key, kept across renders and refreshed in place by `update(key, element or
  // undefined)`: live updates re-render many times a second, and a click whose press and
  // release straddle a render that replaced its element is lost (a clinician's click on a ward
  // tile or an Acknowledge button). The container is re-filled only when the order changed.
  function keyedChildren(container, cache, keys, update) {
    const wanted = keys.map((k) => {
      const e = update(k, cache.get(k));
      cache.set(k, e);
      return e;
    });
    for (const k of [...cache.keys()]) if (!keys.includes(k)) cache.delete(k);
    const shown = [...container.children];
    if (shown.length !== wanted.length || shown.some((c, i) => c !== wanted[i])) container.replaceChildren(...wanted);
  }

  // ---------------------------------------------------------------- rendering
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }
  setInterval(scheduleRender, 1000); // ages and signal status move with the clock

  function renderBanner() {
    const open = unacknowledged();
    const banner = $("alarm-banner");
    if (!open.length) { banner.hidden = true; document.title = "Vigil"; return; }
    const [pid, a] = open[0];
    banner.hidden = false;
    banner.textContent = `ALARM ${pid}: ${KIND_LABEL[a.kind] || a.kind}` + (open.length > 1 ? ` (+${open.length - 1} more)` : "");
    banner.href = `#/patient/${encodeURIComponent(pid)}`;
    document.title = `(!) ALARM ${pid} - Vigil`;
  }

  const wardTiles = new Map(); // patient id -> its tile element, kept across renders
  function renderWard() {
    const tiles = $("tiles");
    $("ward-empty").hidden = app.patients.length > 0;
    const sorted = [...app.patients].sort((x, y) => {
      const dx = patientData(x), dy = patientData(y);
      const s = severity(dy) - severity(dx);
      if (s) return s;
      // A provisional value is a lower bound, so the higher of the two ranks the patient.
      const rank = (d) => Math.max((latestProbability(d) || {}).p ?? -1, (latestProvisional(d) || {}).p ?? -1);
      const px = rank(dx), py = rank(dy);
      return py - px || x.localeCompare(y, undefined, { numeric: true });
    });
    keyedChildren(tiles, wardTiles, sorted, (id, tile) => {
      const d = patientData(id);
      const lp = latestProbability(d), hr = latestHr(d), sig = signalStatus(d), w = worstAlert(d);
      const prov = latestProvisional(d);
      const pText = !lp ? el("span", { class: "not-evaluated", text: "no data yet" })
        : lp.p == null ? el("span", { class: "not-evaluated", text: "not evaluated" })
        : el("span", { class: "value", text: fmtP(lp.p) });
      const provText = prov ? el("span", { class: "provisional", "data-testid": "tile-p-provisional", title: "lower bound of points not final yet",
        text: ` \u00b7 \u2265 ${fmtP(prov.p)} provisional` }) : null;
      // The tile's link stays; its contents are redrawn (app.css sends presses to the link).
      tile = tile || el("a", { href: `#/patient/${encodeURIComponent(id)}`, "data-testid": `tile-${id}`, "data-patient": id });
      tile.className = `tile sev-${severity(d)}`;
      tile.replaceChildren(...[
        el("h3", { text: id }),
        el("div", { class: "row" }, el("span", { text: "Seizure p" }),
          el("span", { "data-testid": "tile-p" }, pText, lp ? el("span", { class: "muted", "data-testid": "tile-p-time", text: ` @ ${clock(lp.t)}${ageNote(lp.t)}` }) : null, provText)),
        el("div", { class: "row" }, el("span", { text: "Heart rate" }),
          el("span", { "data-testid": "tile-hr" }, hr ? el("span", { class: "value", text: `${Math.round(hr.bpm)} bpm` }) : el("span", { class: "not-evaluated", text: "no data yet" }),
            hr ? el("span", { class: "muted", text: ` @ ${clock(hr.t)}${ageNote(hr.t)}` }) : null)),
        el("div", { class: "row" }, el("span", { text: "Signal" }), el("span", { class: sig.cls, "data-testid": "tile-signal", text: sig.text })),
        w ? el("div", { class: "alert " + (w.alert.acknowledged_by ? "acked" : w.alert.escalated ? "escalated" : "unacked"), "data-testid": "tile-alert",
          text: `${KIND_LABEL[w.alert.kind] || w.alert.kind}: ${alertState(w.alert)}` }) : null].filter((c) => c != null));
      return tile;
    });
  }

  // uPlot hook: grey bands with "not evaluated" where every probability series is null.
  function notEvaluatedBands() {
    return {
      hooks: {
        drawClear: [(u) => {
          const xs = u.data[0], ctx = u.ctx;
          const ys = xs.map((_, k) => (u.data.slice(1).some((s) => s[k] != null) ? 0 : null));
          if (!xs.length) return;
          const step = xs.length > 1 ? xs[1] - xs[0] : 0.5;
          ctx.save();
          let i = 0;
          while (i < xs.length) {
            if (ys[i] != null) { i++; continue; }
            let j = i;
            while (j + 1 < xs.length && ys[j + 1] == null) j++;
            const x0 = u.valToPos(xs[i], "x", true), x1 = u.valToPos(xs[j] + step, "x", true);
            const top = u.bbox.top, h = u.bbox.height;
            ctx.fillStyle = "rgba(120,130,140,0.18)";
            ctx.fillRect(x0, top, Math.max(x1 - x0, 1), h);
            const label = "not evaluated";
            ctx.font = `${Math.round(12 * devicePixelRatio)}px sans-serif`;
            if (x1 - x0 > ctx.measureText(label).width + 8 * devicePixelRatio) {
              ctx.fillStyle = "#5b6775";
              ctx.fillText(label, x0 + 4 * devicePixelRatio, top + 14 * devicePixelRatio);
            }
            i = j + 1;
          }
          ctx.restore();
        }],
      },
    };
  }

  function chartWidth(container) {
    return Math.max(300, container.clientWidth || 800);
  }

  function ensureChart(name, container, opts, data) {
    const c = app.charts[name];
    if (c && c.key === opts.key) { c.plot.setData(data); return; }
    if (c) c.plot.destroy();
    container.replaceChildren();
    const plot = new uPlot(Object.assign({ width: chartWidth(container) }, opts.uplot), data, container);
    app.charts[name] = { plot, key: opts.key };
  }

  function destroyCharts() {
    for (const c of Object.values(app.charts)) c.plot.destroy();
    app.charts = {};
  }

  function gridSeries(map, step) {
    // Sorted points; a missing grid point between two known ones becomes a gap too.
    const ts = [...map.keys()].sort((a, b) => a - b);
    const xs = [], ys = [];
    for (let i = 0; i < ts.length; i++) {
      if (i > 0 && step && ts[i] - ts[i - 1] > 1.5 * step) { xs.push((ts[i - 1] + step) / 1000); ys.push(null); }
      xs.push(ts[i] / 1000); ys.push(map.get(ts[i]));
    }
    return [xs, ys];
  }

  function renderEeg(d) {
    const container = $("eeg-chart");
    const spacing = Number($("eeg-spacing").value);
    if (!d.trace || !d.trace.chunks.length) {
      if (app.charts.eeg) { app.charts.eeg.plot.destroy(); delete app.charts.eeg; }
      container.replaceChildren(el("p", { class: "not-evaluated", text: "no EEG received" }));
      $("eeg-scale").textContent = "";
      return;
    }
    const { channels, fs, chunks } = d.trace;
    const n = channels.length, xs = [], ys = channels.map(() => []);
    let expected = null;
    for (const c of chunks) {
      const len = c.samples[0].length;
      if (expected != null && c.start_ms - expected > 1500 / fs) {
        xs.push(expected / 1000); ys.forEach((y) => y.push(null)); // a gap stays a gap
      }
      for (let i = 0; i < len; i++) {
        xs.push((c.start_ms + (i * 1000) / fs) / 1000);
        for (let ch = 0; ch < n; ch++) {
          const v = c.samples[ch][i];
          ys[ch].push(v == null ? null : v + (n - 1 - ch) * spacing);
        }
      }
      expected = c.start_ms + (len * 1000) / fs;
    }
    $("eeg-scale").textContent = `${spacing} \u00b5V between channel baselines, ${fs} Hz; channels top to bottom: ${channels.join(", ")}`;
    const offsets = channels.map((_, ch) => (n - 1 - ch) * spacing);
    ensureChart("eeg", container, {
      key: `${d.id}|${channels.join()}|${spacing}`,
      uplot: {
        height: Math.max(160, 40 * n + 60),
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: true }, y: { range: [-spacing, n * spacing] } },
        axes: [
          {},
          { splits: () => offsets, values: (u, splits) => splits.map((s) => channels[n - 1 - Math.round(s / spacing)] || ""), size: 70 },
        ],
        series: [{}].concat(channels.map((label) => ({ label, stroke: "#1b2430", width: 1, spanGaps: false }))),
      },
    }, [xs].concat(ys));
  }

  function renderProbability(d) {
    // Final values, then the provisional lower bound after them (its own dashed series), on
    // one time axis: [final, provisional] per point, null where a series has no value.
    const merged = new Map([...d.prob].map(([t, p]) => [t, [p, null]]));
    for (const [t, p] of provisionalSeries(d)) merged.set(t, [null, p]);
    const [xs, pairs] = gridSeries(merged, 500);
    const ys = pairs.map((v) => (v ? v[0] : null)), ysProvisional = pairs.map((v) => (v ? v[1] : null));
    const lp = latestProbability(d), prov = latestProvisional(d);
    const latest = $("prob-latest");
    latest.replaceChildren(!lp ? el("span", { class: "not-evaluated", text: "no data yet" })
      : lp.p == null ? el("span", { class: "not-evaluated", text: `not evaluated @ ${clock(lp.t)}` })
      : el("span", { class: "value", text: `p = ${fmtP(lp.p)} @ ${clock(lp.t)}` }),
    prov ? el("span", { class: "provisional", "data-testid": "prob-provisional", title: "lower bound: final values can only be at or above it",
      text: ` \u00b7 provisional \u2265 ${fmtP(prov.p)} @ ${clock(prov.t)} (max so far ${fmtP(prov.max)})` }) : null);
    ensureChart("prob", $("prob-chart"), {
      key: d.id,
      uplot: Object.assign({
        height: 180,
        scales: { x: { time: true }, y: { range: [0, 1] } },
        series: [{}, { label: "seizure p", stroke: "#c62828", width: 1.5, spanGaps: false, value: (u, v, si, idx) => (idx == null ? "--" : v == null ? "not evaluated" : v.toFixed(3)) },
          { label: "provisional (lower bound)", stroke: "#e57373", width: 1.5, dash: [6, 4], spanGaps: false, value: (u, v, si, idx) => (idx == null || v == null ? "--" : `\u2265 ${v.toFixed(3)}`) }],
      }, notEvaluatedBands()),
    }, [xs, ys, ysProvisional]);
  }

  function renderHr(d) {
    const [xs, ys] = gridSeries(d.hr, 0);
    const hr = latestHr(d);
    $("hr-latest").textContent = hr ? `${Math.round(hr.bpm)} bpm @ ${clock(hr.t)}` : "no data yet";
    ensureChart("hr", $("hr-chart"), {
      key: d.id,
      uplot: {
        height: 160,
        scales: { x: { time: true } },
        series: [{}, { label: "bpm", stroke: "#1565c0", width: 1.5, spanGaps: false }],
      },
    }, [xs, ys]);
  }

  const alertRows = new Map(); // alert id -> its row, kept across renders (see keyedChildren)
  function renderAlerts(d) {
    const alerts = [...d.alerts.values()].sort((a, b) => b.raised_ms - a.raised_ms);
    const byId = new Map(alerts.map((a) => [a.alert_id, a]));
    if (!alerts.length) {
      alertRows.clear();
      $("alert-rows").replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "muted", text: "No open alerts" })));
    } else keyedChildren($("alert-rows"), alertRows, alerts.map((a) => a.alert_id), (id, row) => {
      const a = byId.get(id);
      if (!row) {
        // Cells and button stay the same elements; only their text and state change.
        const button = el("button", { type: "button", "data-testid": "ack", "data-alert": id });
        button.addEventListener("click", () => acknowledge(d.id, id));
        row = el("tr", { "data-testid": "alert-row", "data-alert": id },
          el("td"), el("td"), el("td", { "data-testid": "alert-state" }), el("td"), el("td"));
        row.ackButton = button;
      }
      row.className = a.acknowledged_by ? "" : a.escalated ? "escalated" : "unacked";
      const [kind, onset, state, evidence, action] = row.children;
      kind.textContent = KIND_LABEL[a.kind] || a.kind;
      onset.textContent = clock(a.onset_ms);
      state.textContent = alertState(a);
      evidence.textContent = evidenceText(a.evidence);
      const b = row.ackButton;
      if (!a.acknowledged_by && app.session.may_acknowledge) {
        const pending = app.ackPending.has(id);
        b.textContent = pending ? "Acknowledging..." : "Acknowledge";
        b.disabled = pending;
        if (b.parentNode !== action) action.replaceChildren(b);
      } else if (action.firstChild) {
        action.replaceChildren();
      }
      return row;
    });
    const events = [...d.events.values()].sort((a, b) => b.at_ms - a.at_ms).slice(0, 200).map((e) =>
      el("li", { text: `${clock(e.at_ms)} ${KIND_LABEL[e.kind] || e.kind} ${e.transition === "onset_refined" ? `onset refined to ${clock(e.onset_ms)}` : e.transition}${e.by ? " by " + e.by : ""} ${evidenceText(e.evidence)}` }));
    $("alert-events").replaceChildren(...events);
  }

  function renderPatient() {
    const id = app.route.patient;
    const d = patientData(id);
    $("patient-title").textContent = id;
    const sig = signalStatus(d);
    $("patient-status").textContent = `Signal: ${sig.text}`;
    $("patient-status").className = "status " + sig.cls;
    renderAlerts(d);
    renderEeg(d);
    renderProbability(d);
    renderTrends(d);
    renderHr(d);
  }

  function render() {
    if (!app.session) return;
    renderBanner();
    if (app.route.view === "ward") renderWard(); else renderPatient();
  }

  // ---------------------------------------------------------------- actions
  async function acknowledge(patientId, alertId) {
    $("ack-error").textContent = "";
    app.ackPending.add(alertId);
    scheduleRender();
    try {
      await api(`/api/patients/${encodeURIComponent(patientId)}/alerts/${alertId}/ack`, { method: "POST", body: {} });
      // The acknowledgement shows once its event comes back over the live feed.
    } catch (err) {
      app.ackPending.delete(alertId);
      $("ack-error").textContent = `Not acknowledged: ${err.message}`;
      scheduleRender();
    }
  }

  function showLogin() {
    for (const s of Object.values(app.sockets)) s.close();
    app.sockets = {};
    destroyCharts();
    app.session = null;
    $("bar").hidden = true; $("ward-view").hidden = true; $("patient-view").hidden = true;
    $("login-view").hidden = false;
  }

  async function start() {
    try {
      app.session = await api("/api/session");
    } catch (err) {
      if (err.status === 401) { showLogin(); return; }
      $("login-error").textContent = err.message; showLogin(); return;
    }
    $("login-view").hidden = true; $("bar").hidden = false;
    $("who").textContent = `${app.session.user.username} (${app.session.user.role})`;
    const res = await api("/api/patients");
    app.patients = res.patients;
    // The ward socket stays open in every view, so no alarm is missed.
    app.sockets.ward = new LiveSocket("ward", app.patients, false);
    route();
  }

  function route() {
    if (!app.session) return;
    const m = location.hash.match(/^#\/patient\/(.+)$/);
    const patient = m ? decodeURIComponent(m[1]) : null;
    if (app.sockets.patient && app.sockets.patient.patients[0] !== patient) {
      app.sockets.patient.close(); delete app.sockets.patient;
    }
    destroyCharts();
    if (patient) {
      app.route = { view: "patient", patient };
      $("ward-view").hidden = true; $("patient-view").hidden = false;
      if (!app.sockets.patient) {
        app.sockets.patient = new LiveSocket("patient", [patient], true);
        const now = Date.now(), from = now - LIVE_PROB_HOURS * 3600 * 1000;
        for (const kind of ["prob", "hr", "alerts"]) {
          loadHistory(patient, kind, from, now).catch((err) => { $("ack-error").textContent = `History: ${err.message}`; });
        }
        closeEegPage();
        loadTrends(patient).catch((err) => { $("trends-montage").textContent = `Trends: ${err.message}`; });
      }
    } else {
      app.route = { view: "ward", patient: null };
      $("ward-view").hidden = false; $("patient-view").hidden = true;
    }
    scheduleRender();
  }

  function olderButton(buttonId, kind, map) {
    $(buttonId).addEventListener("click", () => {
      const id = app.route.patient; if (!id) return;
      const d = patientData(id);
      const to = oldest(kind === "alerts" ? new Map([...d.events.values()].map((e) => [e.at_ms, e])) : map(d), Date.now());
      loadHistory(id, kind, to - 3600 * 1000, to).catch((err) => { $("ack-error").textContent = `History: ${err.message}`; });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = new FormData(ev.target);
      $("login-error").textContent = "";
      try {
        await api("/api/login", { method: "POST", body: { username: form.get("username"), password: form.get("password") } });
        ev.target.reset();
        await start();
      } catch (err) {
        $("login-error").textContent = err.message;
      }
    });
    $("logout").addEventListener("click", async () => {
      try { await api("/api/logout", { method: "POST", body: {} }); } finally { showLogin(); }
    });
    $("sound").addEventListener("click", toggleSound);
    $("eeg-spacing").addEventListener("change", scheduleRender);
    olderButton("older-prob", "prob", (d) => d.prob);
    olderButton("older-hr", "hr", (d) => d.hr);
    olderButton("older-alerts", "alerts", null);
    for (const b of document.querySelectorAll(".span-button")) {
      b.addEventListener("click", () => {
        trendView.spanH = Number(b.dataset.span);
        if (app.route.patient) loadTrends(app.route.patient).catch((err) => { $("trends-montage").textContent = `Trends: ${err.message}`; });
      });
    }
    // Buckets are recomputed from storage now and then; live intervals fill in between.
    setInterval(() => { if (app.route.patient) loadTrends(app.route.patient).catch(() => {}); }, 60000);
    const reopen = (shift) => () => {
      if (!trendView.page) return;
      const len = Number($("eeg-page-len").value) * 1000;
      openEegPage(trendView.page.id, trendView.page.from + len / 2 + shift * len);
    };
    for (const id of ["eeg-page-len", "eeg-page-montage", "eeg-page-spacing", "eeg-page-hp", "eeg-page-lp", "eeg-page-notch"]) {
      $(id).addEventListener("change", reopen(0));
    }
    $("eeg-page-prev").addEventListener("click", reopen(-1));
    $("eeg-page-next").addEventListener("click", reopen(1));
    $("eeg-page-close").addEventListener("click", closeEegPage);
    window.addEventListener("hashchange", route);
    window.addEventListener("resize", () => { destroyCharts(); if (app.route.patient) patientData(app.route.patient).trends.dirty = true; scheduleRender(); });
    start();
  });
})();
