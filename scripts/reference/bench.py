"""Reference throughput: channel-seconds of EEG processed per CPU-second by
predict_channel_seizure_probability on one thread (ONNX Runtime threads=1), default windows
(300/20/10 s), on the synthetic 256 Hz background signal of make_goldens.py.

Usage: scripts/reference/run bench [seconds]   (default 3600)
Prints one JSON line.
"""
import json
import sys
import time

from brainmaze_eeg_models.seizure import load_trained_model, predict_channel_seizure_probability

from make_goldens import synthetic_channel

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0
fs = 256
x = synthetic_channel(fs, seconds, seed=1)
model = load_trained_model("modelA", device="cpu", threads=1)
predict_channel_seizure_probability(x[: fs * 300], fs, model=model)  # warm-up
cpu0, wall0 = time.process_time(), time.perf_counter()
predict_channel_seizure_probability(x, fs, model=model)
cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
print(json.dumps({"impl": "python-reference", "signal_s": seconds, "cpu_s": round(cpu, 3),
                  "wall_s": round(wall, 3), "channel_s_per_cpu_s": round(seconds / cpu, 1)}))
