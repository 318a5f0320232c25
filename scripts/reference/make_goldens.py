"""Reference outputs of brainmaze-eeg-models for Vigil's parity tests.

Runs the reference Python package (pinned in requirements.txt) on deterministic synthetic EEG
and writes inference/tests/golden/reference.json. The Rust side generates the identical signal
(inference/tests/parity.rs, `synthetic_channel`) and must match the probabilities to 1e-4 with
identical NaN masks.

Signal (all in float64, microvolts): a 64-bit LCG (Knuth MMIX constants) drives approximately
Gaussian noise (sum of four uniforms minus 2), plus a 10 Hz alpha rhythm; optional
seizure-like burst (3 Hz spike-and-wave-like: fundamental + two harmonics, 150 uV, with a 2 s
linear ramp at each end), a NaN gap, and a flat (constant) stretch.

Run with scripts/reference/run (creates the venv).
"""
import json
import math
import pathlib
import sys

import numpy as np
from scipy.signal import get_window

from brainmaze_eeg_models.seizure import _seizure_detect as ref
from brainmaze_eeg_models.seizure import load_trained_model

MASK64 = (1 << 64) - 1
LCG_A = 6364136223846793005
LCG_C = 1442695040888963407


def lcg_uniforms(seed, n):
    """n uniforms in [0, 1) from the top 53 bits of an MMIX LCG state."""
    state = (seed * 0x9E3779B97F4A7C15 + 1) & MASK64
    out = np.empty(n)
    for i in range(n):
        state = (state * LCG_A + LCG_C) & MASK64
        out[i] = (state >> 11) / float(1 << 53)
    return out


def synthetic_channel(fs, seconds, seed, burst=None, gap=None, flat=None):
    n = int(fs * seconds)
    u = lcg_uniforms(seed, 4 * n).reshape(n, 4)
    noise = (u.sum(axis=1) - 2.0) * 15.0
    t = np.arange(n) / fs
    x = noise + 20.0 * np.sin(2 * math.pi * 10.0 * t + seed)
    if burst is not None:
        t0, t1 = burst
        ramp = np.clip(np.minimum(t - t0, t1 - t) / 2.0, 0.0, 1.0)
        wave = (np.sin(2 * math.pi * 3.0 * t) + 0.5 * np.sin(2 * math.pi * 6.0 * t)
                + 0.25 * np.sin(2 * math.pi * 9.0 * t))
        x = x + 150.0 * ramp * wave
    if gap is not None:
        a, b = (int(round(v * fs)) for v in gap)
        x[a:b] = np.nan
    if flat is not None:
        a, b = (int(round(v * fs)) for v in flat)
        x[a:b] = 5.0
    # Vigil carries samples as f32 (EegChunk): give the reference the same values.
    return x.astype(np.float32).astype(np.float64)


# Every case: signal definition + windowing parameters. Kept small: the golden file is committed.
CASES = [
    {
        "name": "fs256_default_params",
        "fs": 256, "seconds": 400, "window_s": 300, "step_s": 20, "discard_edges_s": 10,
        "channels": [
            {"seed": 1},
            {"seed": 2, "burst": [150.0, 190.0]},
            {"seed": 3, "burst": [320.0, 350.0], "gap": [200.0, 202.3], "flat": [250.0, 252.0]},
        ],
    },
    {
        "name": "fs256_step5",
        "fs": 256, "seconds": 330, "window_s": 300, "step_s": 5, "discard_edges_s": 10,
        "channels": [{"seed": 2, "burst": [150.0, 190.0]}],
    },
    {
        "name": "fs500_short_window_with_tail",
        "fs": 500, "seconds": 125, "window_s": 60, "step_s": 10, "discard_edges_s": 5,
        "channels": [{"seed": 4, "burst": [70.0, 95.0], "gap": [30.0, 31.7]}],
    },
]


def clean(values):
    """Floats as JSON: NaN -> null, 9 significant digits."""
    return [None if not np.isfinite(v) else float(f"{v:.9g}") for v in values]


def main(out_path):
    model = load_trained_model("modelA", device="cpu")
    cases = []
    for case in CASES:
        fs = case["fs"]
        channels = []
        for ch in case["channels"]:
            x = synthetic_channel(fs, case["seconds"], ch["seed"], ch.get("burst"), ch.get("gap"), ch.get("flat"))
            t, p = ref.predict_channel_seizure_probability(
                x, fs, model=model, window_s=case["window_s"], step_s=case["step_s"],
                discard_edges_s=case["discard_edges_s"])
            channels.append({**ch, "prob": clean(p)})
            print(f"{case['name']} seed={ch['seed']}: {len(p)} points, "
                  f"{int(np.isnan(p).sum())} NaN, max {np.nanmax(p):.4f}", file=sys.stderr)
        cases.append({k: v for k, v in case.items() if k != "channels"} | {"channels": channels})

    # Intermediate checks that localise a mismatch: the Tukey window and one normalised
    # spectrogram (10 s of the gap/flat channel around the gap).
    fs = 256
    x = synthetic_channel(fs, 400, 3, [320.0, 350.0], [200.0, 202.3], [250.0, 252.0])
    seg = x[196 * fs:206 * fs]
    sxx = ref.preprocess_input(seg, fs)[0]
    golden = {
        "package": "brainmaze-eeg-models==0.1.0",
        "tukey_256": clean(get_window(("tukey", 0.25), fs)),
        "preprocess": {"fs": fs, "start_s": 196, "seconds": 10, "seed": 3,
                       "burst": [320.0, 350.0], "gap": [200.0, 202.3], "flat": [250.0, 252.0],
                       "sxx": [clean(row) for row in sxx]},
        "cases": cases,
    }
    pathlib.Path(out_path).write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
