"""Independent reference values for Vigil's EDF reader and resampler (replay/tests).

Reads the real recordings fetched by scripts/fetch-data with pyedflib (a C reader, EDFlib) and
resamples real segments with scipy.signal.resample_poly, writing replay/tests/golden/
data_reference.json. Only small excerpts are stored: header fields, annotations, the first
samples and samples at spread indices of every signal, per-signal sums, and the resampled
segments.

Run with scripts/reference/run data (creates the venv from requirements-data.txt).
"""
import json
import os
import pathlib
import sys

import numpy as np
import pyedflib
from scipy.signal import resample_poly

DATA = pathlib.Path(os.environ.get("VIGIL_DATA_DIR", pathlib.Path.home() / ".cache/vigil/data"))
FILES = [
    "edfjs/sample.edf",
    "edfjs/edfp-sample.edf",
    "biosignalsnotebooks/S001R02.edf",
    "biosignalsnotebooks/eeg_acoustic.edf",
    "biosignalsnotebooks/eeg_acoustic_a.edf",
    "epilepsy2bids/chb08_02.edf",
]
# (file, signal index, start sample, samples, up, down)
RESAMPLE = [
    ("edfjs/sample.edf", 0, 2560, 1024, 25, 32),          # 256 -> 200 Hz
    ("biosignalsnotebooks/S001R02.edf", 10, 1600, 640, 5, 4),  # 160 -> 200 Hz
    ("biosignalsnotebooks/eeg_acoustic_a.edf", 0, 30000, 2000, 1, 2),  # 1000 -> 500 Hz; a 330 Hz tone must be filtered out
]


def spread(n, k=7):
    return sorted(set(int(round(i * (n - 1) / (k - 1))) for i in range(k)))


def describe(rel):
    r = pyedflib.EdfReader(str(DATA / rel))
    try:
        n = r.signals_in_file
        signals = []
        for i in range(n):
            x = r.readSignal(i, digital=False)
            idx = spread(len(x))
            signals.append({
                "label": r.getLabel(i),
                "dimension": r.getPhysicalDimension(i),
                "sample_rate_hz": float(r.getSampleFrequency(i)),
                "n_samples": int(len(x)),
                "physical_min": r.getPhysicalMinimum(i),
                "physical_max": r.getPhysicalMaximum(i),
                "digital_min": int(r.getDigitalMinimum(i)),
                "digital_max": int(r.getDigitalMaximum(i)),
                "first": [float(v) for v in x[:8]],
                "at": [[int(j), float(x[j])] for j in idx],
                "sum": float(np.sum(x)),
                "sum_sq": float(np.sum(x * x)),
            })
        onsets, durations, texts = r.readAnnotations()
        start = r.getStartdatetime()
        return {
            "file": rel,
            "n_records": int(r.datarecords_in_file),
            "record_duration_s": float(r.datarecord_duration),
            "duration_s": float(r.getFileDuration()),
            "start": start.strftime("%Y-%m-%dT%H:%M:%S"),
            "signals": signals,
            # pyedflib reports a missing duration as -1.
            "annotations": [[float(o), float(d), str(t)] for o, d, t in zip(onsets, durations, texts)],
        }
    finally:
        r.close()


def resampled(rel, index, start, count, up, down):
    r = pyedflib.EdfReader(str(DATA / rel))
    try:
        x = r.readSignal(index, start=start, n=count, digital=False)
    finally:
        r.close()
    y = resample_poly(x, up, down)
    return {"file": rel, "signal": index, "start": start, "count": count, "up": up,
            "down": down, "output": [float(v) for v in y]}


def main(out):
    golden = {
        "generator": "scripts/reference/make_data_goldens.py (pyedflib %s, scipy resample_poly)" % pyedflib.__version__,
        "files": [describe(f) for f in FILES],
        "resample_poly": [resampled(*c) for c in RESAMPLE],
    }
    with open(out, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
