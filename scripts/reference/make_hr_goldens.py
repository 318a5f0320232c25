"""Heart-rate goldens for inference/tests/heart_rate.rs, from real recordings.

Inputs (fetched by scripts/fetch-data, pinned with sha256 in data/manifest.toml):
- pyhrv 0.5.0 `SampleNNISeriesLong.npy`: 60 min of real NN intervals (ms);
- scipy 1.11.4 `ecg.dat`: MIT-BIH arrhythmia record 208, 5 min at 360 Hz (many premature
  ventricular beats), from which R peaks are detected here with scipy.

This script is an independent numpy implementation of the rules documented in
inference/src/heart_rate.rs and inference/src/alerts.rs (not a translation of the Rust code):
plausibility, Malik-filtered RMSSD over a trailing window, ictal-tachycardia rises (3 s current
median vs. the median of the 60 s baseline ending 10 s earlier), and band alerts (a run of
valid rates on one side of a band edge spanning >= 10 s, runs broken by gaps > 5 s).

Usage: python make_hr_goldens.py DATA_DIR OUT_JSON
"""

import json
import sys
from pathlib import Path

import numpy as np
import scipy
from scipy import signal

VALID = (25.0, 250.0)
MALIK = 0.2
RMSSD_WINDOW_S = 300.0
BASELINE_S, WITHIN_S, CURRENT_S, RISE_BPM = 60.0, 10.0, 3.0, 10.0
BAND_S, GAP_S = 10.0, 5.0


def beats_from_rr(rr_ms, t0_s=0.0):
    """Beat times (s, at the end of each interval), rr and bpm as float32 like the records."""
    rr = np.asarray(rr_ms, dtype=np.float32)
    t = t0_s + np.cumsum(rr.astype(np.float64)) / 1000.0
    # Records carry integer ns times; round like the Rust test does.
    t_ns = np.round(t * 1e9).astype(np.int64)
    bpm = (np.float32(60000.0) / rr).astype(np.float32)
    return t_ns, rr, bpm


def rmssd_series(t_ns, rr, checkpoints_ns):
    lo, hi = 60000.0 / VALID[1], 60000.0 / VALID[0]
    normal = np.zeros(len(rr), dtype=bool)
    for i, x in enumerate(rr):
        ok = lo <= x <= hi
        if i > 0:
            ok = ok and abs(float(x) - float(rr[i - 1])) <= MALIK * float(rr[i - 1])
        normal[i] = ok
    diffs_t, diffs = [], []
    for i in range(1, len(rr)):
        if normal[i] and normal[i - 1]:
            diffs_t.append(t_ns[i])
            diffs.append(float(np.float32(rr[i] - rr[i - 1])))
    diffs_t, diffs = np.array(diffs_t), np.array(diffs)
    out = []
    win = int(RMSSD_WINDOW_S * 1e9)
    for c in checkpoints_ns:
        sel = (diffs_t > c - win) & (diffs_t <= c)
        out.append(float(np.sqrt(np.mean(diffs[sel] ** 2))) if sel.sum() >= 10 else None)
    return out, int((~normal).sum())


def rises(t_ns, bpm):
    valid = (bpm >= VALID[0]) & (bpm <= VALID[1])
    t_v, b_v = t_ns[valid], bpm[valid]
    found = []
    for i in range(len(t_v)):
        t = t_v[i]
        b_to = t - int(WITHIN_S * 1e9)
        b_from = b_to - int(BASELINE_S * 1e9)
        sel = (t_v >= b_from) & (t_v < b_to)
        base = b_v[sel]
        if len(base) < 5 or (t_v[sel][-1] - t_v[sel][0]) * 2 < int(BASELINE_S * 1e9):
            continue
        cur = b_v[(t_v > t - int(CURRENT_S * 1e9)) & (t_v <= t)]
        rise = float(np.median(cur.astype(np.float64))) - float(np.median(base.astype(np.float64)))
        if rise >= RISE_BPM:
            found.append(int(t))
    return found


def band_alerts(t_ns, bpm, low, high):
    """Raise/resolve times (ns of the deciding point) for tachy and brady."""
    valid = (bpm >= VALID[0]) & (bpm <= VALID[1])
    events = []
    for kind, outside_of in (("tachycardia", lambda b: b > high), ("bradycardia", lambda b: b < low)):
        active = False
        run = None  # (first, last)
        for t, b in zip(t_ns[valid], bpm[valid]):
            qualifies = outside_of(b) if not active else not outside_of(b)
            if not qualifies:
                run = None
                continue
            if run is None or t - run[1] > int(GAP_S * 1e9):
                run = (t, t)
            else:
                run = (run[0], t)
            if (run[1] - run[0]) / 1e9 >= BAND_S:
                # Every event of an alert carries the alert's onset: the start of the run
                # that raised it.
                if not active:
                    onset = int(run[0])
                events.append({"kind": kind, "transition": "resolved" if active else "raised",
                               "at_t_ns": int(t), "onset_ns": onset})
                active = not active
                run = None
    events.sort(key=lambda e: (e["at_t_ns"], e["kind"]))
    return events


def r_peaks(ecg_mv, fs):
    """R peaks: 5-20 Hz band-pass, absolute value, peaks >= 200 ms apart above 35 % of the
    99th percentile. Good enough for record 208's normal and ventricular beats."""
    sos = signal.butter(3, [5, 20], btype="band", fs=fs, output="sos")
    env = np.abs(signal.sosfiltfilt(sos, ecg_mv))
    peaks, _ = signal.find_peaks(env, distance=int(0.2 * fs), height=0.35 * np.percentile(env, 99))
    return peaks


def summarise(name, rr_ms, tight_band):
    t_ns, rr, bpm = beats_from_rr(rr_ms)
    # At the last beat of every 5 min, and at the very last beat (beat times, so the
    # streaming tracker can be asked right after that beat).
    marks = list(range(int(300e9), int(t_ns[-1]), int(300e9)))
    checkpoints = [int(t_ns[np.searchsorted(t_ns, m, side="right") - 1]) for m in marks]
    checkpoints.append(int(t_ns[-1]))
    rmssd, rejected = rmssd_series(t_ns, rr, checkpoints)
    return {
        "name": name,
        "beats": len(rr),
        "malik_rejected": rejected,
        "mean_bpm": float(np.mean(bpm.astype(np.float64))),
        "rmssd_checkpoints_ns": checkpoints,
        "rmssd_ms": rmssd,
        "rise_times_ns": rises(t_ns, bpm),
        "default_band_events": band_alerts(t_ns, bpm, 50.0, 120.0),
        "tight_band": {"brady_below_bpm": tight_band[0], "tachy_above_bpm": tight_band[1]},
        "tight_band_events": band_alerts(t_ns, bpm, *tight_band),
    }


def main():
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    nni = np.load(data / "pyhrv" / "SampleNNISeriesLong.npy")
    with np.load(data / "scipy" / "ecg.dat") as f:
        ecg = (f["ecg"].astype(np.float64) - 1024) / 200.0
    fs = 360.0
    peaks = r_peaks(ecg, fs)
    ecg_rr = np.diff(peaks) / fs * 1000.0
    golden = {
        "made_by": "scripts/reference/make_hr_goldens.py (numpy %s, scipy %s)" % (np.__version__, scipy.__version__),
        "nni": summarise("pyhrv SampleNNISeriesLong", nni, (65.0, 85.0)),
        # Peaks are derived data (our detector's output), kept so the Rust test needs no ECG DSP.
        "ecg_r_peaks": [int(p) for p in peaks],
        "ecg_fs": fs,
        "ecg": summarise("MIT-BIH 208 via scipy ecg.dat", ecg_rr.astype(np.float32), (65.0, 85.0)),
    }
    out.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {out}: nni rises {len(golden['nni']['rise_times_ns'])}, "
          f"tight events {len(golden['nni']['tight_band_events'])}, ecg beats {golden['ecg']['beats']}, "
          f"ecg rejected {golden['ecg']['malik_rejected']}, ecg mean bpm {golden['ecg']['mean_bpm']:.1f}")


if __name__ == "__main__":
    main()
