"""Independent reference values for Vigil's qEEG trends (inference/src/trends, docs/TRENDS.md).

Whole-signal numpy/scipy implementation of the definitions in docs/TRENDS.md: CSA and
asymmetry from scipy.signal.spectrogram, aEEG and burst suppression from scipy.signal.butter /
bilinear / sosfilt applied to each run of finite samples, suppression runs from run-length
encoding. Inputs: real EEG fetched by scripts/fetch-data (read with pyedflib) and synthetic
signals generated here and in inference/tests/trends.rs from the same seeds and formulas.
Writes inference/tests/golden/trends_reference.json.

Run with scripts/reference/run trends (venv from requirements-data.txt).
"""
import json
import math
import os
import pathlib
import sys

import numpy as np
import pyedflib
from scipy import signal

DATA = pathlib.Path(os.environ.get("VIGIL_DATA_DIR", pathlib.Path.home() / ".cache/vigil/data"))

PARAMS = {
    "asymmetry_index_lo_hz": 1,
    "asymmetry_index_hi_hz": 18,
    "aeeg_highpass_hz": 2.0,
    "aeeg_lowpass_hz": 15.0,
    "aeeg_envelope_hz": 1.0,
    "warmup_s": 4.0,
    "bsr_highpass_hz": 0.5,
    "bsr_lowpass_hz": 30.0,
    "bsr_threshold_uv": 5.0,
    "bsr_min_duration_s": 0.5,
    "bsr_window_s": 60.0,
    "bsr_min_valid_fraction": 0.75,
}
BINS = 30
REGIONS = ["left lateral", "left parasagittal", "right parasagittal", "right lateral"]
CHAINS = [
    ["FP1", "F7", "T7", "P7", "O1"],
    ["FP1", "F3", "C3", "P3", "O1"],
    ["FP2", "F4", "C4", "P4", "O2"],
    ["FP2", "F8", "T8", "P8", "O2"],
]
OLD = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
CHB_LABELS = [
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
    "FP2-F4", "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
]


# ---------------------------------------------------------------------------- montage

def electrode(name):
    e = name.strip().rstrip(".").upper()
    return OLD.get(e, e)


def montage(labels):
    """Double banana from bipolar labels, else from referential ones; else one group 'all'.

    Returns (kind, derivations [(name, plus, minus|None, side|None, region)], left, right):
    left/right are the homologous derivations compared by the asymmetry.
    """
    bipolar, referential = {}, {}
    for i, lab in enumerate(labels):
        parts = [electrode(p) for p in lab.split("-")]
        if len(parts) == 2:
            bipolar.setdefault((parts[0], parts[1]), i)
        elif len(parts) == 1:
            referential.setdefault(parts[0], i)
    for kind in ("double_banana", "referential_to_bipolar"):
        ders, slots = [], {}
        for c, chain in enumerate(CHAINS):
            for link in range(4):
                a, b = chain[link], chain[link + 1]
                if kind == "double_banana" and (a, b) in bipolar:
                    src = (bipolar[(a, b)], None)
                elif kind == "referential_to_bipolar" and a in referential and b in referential:
                    src = (referential[a], referential[b])
                else:
                    continue
                slots[(c, link)] = len(ders)
                name = f"{a}-{b}".replace("FP", "Fp")
                ders.append((name, src[0], src[1], "left" if c < 2 else "right", REGIONS[c]))
        if ders:
            left = [slots[(c, l)] for c in (0, 1) for l in range(4)
                    if (c, l) in slots and (3 - c, l) in slots]
            right = [slots[(3 - c, l)] for c in (0, 1) for l in range(4)
                     if (c, l) in slots and (3 - c, l) in slots]
            return kind, ders, left, right
    ders = [(lab, i, None, None, "all") for i, lab in enumerate(labels)]
    return "channel_groups", ders, [], []


# ---------------------------------------------------------------------------- synthetic

M64 = (1 << 64) - 1


def gauss(seed, n):
    """Approximately unit Gaussian: sum of four LCG uniforms (MMIX constants), centred, x sqrt(3)."""
    state = (seed * 0x9E3779B97F4A7C15 + 1) & M64
    u = np.empty(4 * n)
    for i in range(4 * n):
        state = (state * 6364136223846793005 + 1442695040888963407) & M64
        u[i] = (state >> 11) / float(1 << 53)
    return (u.reshape(n, 4).sum(axis=1) - 2.0) * math.sqrt(3.0)


def synthetic(kind, fs, seconds):
    n = int(fs * seconds)
    t = np.arange(n) / fs
    rows = []
    for c in range(16):
        noise = gauss(1000 * (["burst_suppression", "lateralised", "aeeg_ramp"].index(kind) + 1) + c, n)
        if kind == "burst_suppression":
            burst = (np.mod(t, 5.0) < 2.0).astype(float)
            x = 1.0 * noise + burst * (40.0 * np.sin(2 * np.pi * 6.0 * t + 0.4 * c)
                                      + 30.0 * np.sin(2 * np.pi * 11.0 * t))
        elif kind == "lateralised":
            x = 5.0 * noise + (20.0 * np.sin(2 * np.pi * 10.0 * t + 0.3 * c) if c < 8 else 0.0)
            if c == 5:
                x[int(20 * fs):int(21 * fs)] = np.nan
        else:
            amp = 5.0 + 95.0 * t / seconds
            x = 0.5 * noise + amp * (np.sin(2 * np.pi * 3.0 * t) + np.sin(2 * np.pi * 7.0 * t + 1.0)
                                     + np.sin(2 * np.pi * 12.0 * t + 2.0)) / 3.0
        rows.append(x.astype(np.float32))
    return np.array(rows)


# ---------------------------------------------------------------------------- trends

def runs(mask):
    """[start, end) of each run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def run_filter(x, band, smooth, warm):
    """Causal filtering of each run of finite samples from zero state; NaN during warm-up."""
    y = np.full(x.shape, np.nan)
    for s, e in zip(*runs(np.isfinite(x))):
        z = signal.sosfilt(band, x[s:e])
        if smooth is not None:
            z = signal.sosfilt(smooth, np.abs(z))
        y[s + warm:e] = z[warm:]
    return y


def filters(fs):
    p = PARAMS
    wz, wp = 2 * np.pi * p["aeeg_highpass_hz"], 2 * np.pi * p["aeeg_lowpass_hz"]
    g = abs(1j * wp + wp) / abs(1j * wp + wz)
    b, a = signal.bilinear([g, g * wz], [1.0, wp], fs=fs)
    weight = np.array([[b[0], b[1], 0.0, 1.0, a[1], 0.0]])
    band = np.vstack([
        weight,
        signal.butter(2, p["aeeg_highpass_hz"], "highpass", fs=fs, output="sos"),
        signal.butter(4, p["aeeg_lowpass_hz"], "lowpass", fs=fs, output="sos"),
    ])
    # Two first-order sections: a critically damped smoother whose output is never negative.
    first = signal.butter(1, p["aeeg_envelope_hz"], "lowpass", fs=fs, output="sos")
    smooth = np.vstack([first, first])
    bsr = np.vstack([
        signal.butter(2, p["bsr_highpass_hz"], "highpass", fs=fs, output="sos"),
        signal.butter(4, p["bsr_lowpass_hz"], "lowpass", fs=fs, output="sos"),
    ])
    return band, smooth, bsr


def suppression(amp, fs, points):
    """BSR (%) at the end of each point over the trailing window."""
    p = PARAMS
    w = int(round(p["bsr_window_s"] * fs))
    min_run = int(round(p["bsr_min_duration_s"] * fs))
    min_valid = math.ceil(p["bsr_min_valid_fraction"] * w)
    below = np.isfinite(amp) & (amp < p["bsr_threshold_uv"])
    out = []
    for k in range(points):
        end = (k + 1) * 2 * fs
        if end < w:
            out.append(None)
            continue
        valid = int(np.isfinite(amp[end - w:end]).sum())
        starts, stops = runs(below[:end])
        long_ = (stops - starts) >= min_run
        s = np.clip(starts[long_], end - w, end)
        e = np.clip(stops[long_], end - w, end)
        supp = int((e - s).sum())
        out.append(None if valid < min_valid or valid == 0 else 100.0 * supp / valid)
    return out


def nan_to_none(a, digits):
    return [None if not np.isfinite(v) else round(float(v), digits) for v in np.ravel(a)]


def trends(rows, labels, fs):
    kind, ders, left, right = montage(labels)
    x = np.array([rows[p].astype(np.float64) - (rows[m].astype(np.float64) if m is not None else 0.0)
                  for _, p, m, _, _ in ders])
    n = x.shape[1]
    points = n // (2 * fs)
    _, _, sxx = signal.spectrogram(x, fs=fs, window=("tukey", 0.25), nperseg=fs, noverlap=fs // 2,
                                   detrend="constant", scaling="density", mode="psd")
    # Segment k starts at k * fs/2; point p holds the three segments 4p, 4p+1, 4p+2.
    seg = np.stack([sxx[:, 1:BINS + 1, 4 * k:4 * k + 3] for k in range(points)])  # (pt, der, bin, 3)
    names = REGIONS if kind != "channel_groups" else ["all"]
    csa = []
    for r in names:
        idx = [i for i, d in enumerate(ders) if d[4] == r]
        mean = seg[:, idx].mean(axis=(1, 3)) if idx else np.full((points, BINS), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            csa.append(np.where(mean > 0, 10 * np.log10(mean), np.nan))
    if left and right:
        lp, rp = seg[:, left].mean(axis=(1, 3)), seg[:, right].mean(axis=(1, 3))
        lo, hi = PARAMS["asymmetry_index_lo_hz"], PARAMS["asymmetry_index_hi_hz"]
        with np.errstate(invalid="ignore"):
            asym = (lp - rp) / (lp + rp)
            ls, rs = lp[:, lo - 1:hi].sum(axis=1), rp[:, lo - 1:hi].sum(axis=1)
            index = (ls - rs) / (ls + rs)
    else:
        asym, index = np.full((points, BINS), np.nan), np.full(points, np.nan)
    band, smooth, bsr = filters(fs)
    warm = int(round(PARAMS["warmup_s"] * fs))
    env = np.array([np.pi * run_filter(d, band, smooth, warm) for d in x])
    amp = np.array([np.abs(run_filter(d, bsr, None, warm)) for d in x])
    sides = {}
    for side, members in (("left", [i for i, d in enumerate(ders) if d[3] == "left"]),
                          ("right", [i for i, d in enumerate(ders) if d[3] == "right"]),
                          ("global", list(range(len(ders))))):
        if not members:
            none = [None] * points
            sides[side] = {"aeeg_min_uv": none, "aeeg_max_uv": none, "bsr_percent": none}
            continue
        e = env[members].mean(axis=0)[:points * 2 * fs].reshape(points, 2 * fs)
        a = amp[members].max(axis=0)
        sides[side] = {
            "aeeg_min_uv": nan_to_none(e.min(axis=1), 4),
            "aeeg_max_uv": nan_to_none(e.max(axis=1), 4),
            "bsr_percent": [None if v is None else round(v, 4) for v in suppression(a, fs, points)],
        }
    return {
        "montage": kind,
        "derivations": [d[0] for d in ders],
        "regions": names,
        "region_members": [[d[0] for d in ders if d[4] == r] for r in names],
        "points": points,
        "csa_db": [nan_to_none(c, 3) for c in csa],
        "asymmetry": nan_to_none(asym, 5),
        "asymmetry_index": nan_to_none(index, 6),
        **sides,
    }


def edf_case(rel, seconds, labels=None, gap=None):
    r = pyedflib.EdfReader(str(DATA / rel))
    try:
        fs = int(r.getSampleFrequency(0))
        n = int(seconds * fs)
        rows = np.array([r.readSignal(i)[:n] for i in range(r.signals_in_file)]).astype(np.float32)
        file_labels = [r.getLabel(i) for i in range(r.signals_in_file)]
    finally:
        r.close()
    if gap is not None:
        ch, s0, s1 = gap
        rows[ch, int(s0 * fs):int(s1 * fs)] = np.nan
    labels = labels or file_labels
    out = {"source": rel, "seconds": seconds, "sample_rate_hz": fs, "labels": labels,
           "gap": gap, **trends(rows, labels, fs)}
    return out


def main(path):
    cases = {}
    fs = 256
    for kind, seconds in (("burst_suppression", 90), ("lateralised", 40), ("aeeg_ramp", 90)):
        rows = synthetic(kind, fs, seconds)
        cases[kind] = {"source": "synthetic", "seconds": seconds, "sample_rate_hz": fs,
                       "labels": CHB_LABELS, **trends(rows, CHB_LABELS, fs)}
    cases["eegmmi_referential"] = edf_case("biosignalsnotebooks/S001R02.edf", 60)
    cases["edfjs_bipolar"] = edf_case("edfjs/sample.edf", 100, gap=[0, 30.0, 31.0])
    cases["edfjs_groups"] = edf_case("edfjs/sample.edf", 60, labels=["A", "B", "C", "D", "E"])
    doc = {
        "generator": "scripts/reference/make_trends_goldens.py",
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "params": PARAMS,
        "cases": cases,
    }
    pathlib.Path(path).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {pathlib.Path(path).stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "inference/tests/golden/trends_reference.json")
