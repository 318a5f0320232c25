"""A real LSL outlet (pylsl, whose wheel ships liblsl) for the bridge's tests.

Pushes EEG from a raw file (float64 little-endian, sample-major: all channels of sample 0,
then sample 1, ...) in real time as an LSL stream of type EEG, and optionally a synthetic
heart-rate stream of type HR (bpm and RR in ms, one sample per beat, irregular rate).

Timestamps are explicit, like an amplifier with its own sample clock: sample n of a run is
stamped t0 + (n - first) / rate, where t0 is local_clock() when the run starts, and pushed
once that time has come. On SIGTERM the outlet stops pushing, lingers so the inlet can pull
what was pushed, and writes its state (next EEG sample, next beat) to --state, from which a
restarted outlet (--resume) continues. Every run appends one line of JSON to --log: where the
run started, its t0, and this host's UTC minus local_clock() with the bracket of that reading,
so the test can check the bridge's UTC times.

Usage: outlet.py --samples F --channels A,B --rate HZ --unit U --divide D --state S --log L
                 [--resume] [--hr-beats N] [--name N] [--source-id ID] [--block N]
"""

import argparse
import array
import json
import math
import signal
import sys
import time

import pylsl


def utc_minus_local():
    best = None
    for _ in range(16):
        before = time.time_ns()
        local = round(pylsl.local_clock() * 1e9)
        after = time.time_ns()
        err = (after - before + 1) // 2
        if best is None or err < best[1]:
            best = (before + (after - before) // 2 - local, err)
    return best


def beat_bpm(i):
    return 70.0 + 12.0 * math.sin(2 * math.pi * i / 40.0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", required=True)
    p.add_argument("--channels", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--unit", default="microvolts")
    p.add_argument("--divide", type=float, default=1.0)
    p.add_argument("--state", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--hr-beats", type=int, default=0)
    p.add_argument("--name", default="VigilTestAmp")
    p.add_argument("--source-id", default="vigil-test-amp")
    p.add_argument("--block", type=int, default=8)
    args = p.parse_args()

    labels = args.channels.split(",")
    nch = len(labels)
    data = array.array("d")
    with open(args.samples, "rb") as f:
        data.frombytes(f.read())
    if sys.byteorder != "little":
        data.byteswap()
    total = len(data) // nch

    state = {"eeg_next": 0, "hr_next": 0}
    if args.resume:
        with open(args.state) as f:
            state = json.load(f)

    info = pylsl.StreamInfo(args.name, "EEG", nch, args.rate, "double64", args.source_id)
    chans = info.desc().append_child("channels")
    for label in labels:
        c = chans.append_child("channel")
        c.append_child_value("label", label)
        c.append_child_value("unit", args.unit)
        c.append_child_value("type", "EEG")
    eeg = pylsl.StreamOutlet(info, chunk_size=args.block)

    hr = None
    if args.hr_beats:
        hinfo = pylsl.StreamInfo(args.name + "_HR", "HR", 2, pylsl.IRREGULAR_RATE, "float32",
                                 args.source_id + "-hr")
        hch = hinfo.desc().append_child("channels")
        for label, unit in (("bpm", "bpm"), ("rr", "ms")):
            c = hch.append_child("channel")
            c.append_child_value("label", label)
            c.append_child_value("unit", unit)
        hr = pylsl.StreamOutlet(hinfo)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))

    # Wait for the bridge's inlet(s) so nothing is pushed into the void.
    while not stopping and not (eeg.have_consumers() and (hr is None or hr.have_consumers())):
        time.sleep(0.02)

    first, beat = state["eeg_next"], state["hr_next"]
    t0 = pylsl.local_clock()
    offset, offset_err = utc_minus_local()
    with open(args.log, "a") as f:
        f.write(json.dumps({"first": first, "t0": t0, "rate": args.rate, "first_beat": beat,
                            "utc_minus_local_ns": offset, "utc_err_ns": offset_err}) + "\n")

    n = first
    next_beat_t = t0
    while not stopping and (n < total or (hr is not None and beat < args.hr_beats)):
        now = pylsl.local_clock()
        if n < total:
            end = min(total, n + args.block)
            last_t = t0 + (end - 1 - first) / args.rate
            if now >= last_t:
                for k in range(n, end):
                    row = [data[k * nch + c] / args.divide for c in range(nch)]
                    eeg.push_sample(row, t0 + (k - first) / args.rate)
                n = end
        if hr is not None and beat < args.hr_beats and now >= next_beat_t:
            bpm = beat_bpm(beat)
            hr.push_sample([bpm, 60000.0 / bpm], next_beat_t)
            beat += 1
            next_beat_t += 60.0 / bpm
        time.sleep(0.002)

    # Let the inlets pull what was pushed before the outlets go away.
    time.sleep(1.0)
    with open(args.state, "w") as f:
        json.dump({"eeg_next": n, "hr_next": beat}, f)
    print(f"outlet: stopped at sample {n} of {total}, beat {beat}", file=sys.stderr)


if __name__ == "__main__":
    main()
