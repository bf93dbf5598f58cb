"""CPU cost of emotion heads on the encoder's states, side by side in one run.

Each head scores the same 200 random segments of 0.3-6 s (Whisper base's shape: 7 hidden
states of 512 at 50 frames per second) through the product's scoring path
(`ser_core.scoring.predict_states`). The heads are timed in turn, round after round, so that a
change in the machine's load falls on all of them alike; the best round of each is printed as
CPU seconds, times real time per core (seconds of speech per CPU second) and a ratio to the
first head.

    python benchmarks/head_speed.py                        # the former head against the default
    python benchmarks/head_speed.py "layers=mix" "layers=concat projection=64"

Each argument is one head: space-separated HeadConfig overrides (as `ser train --arch`).
"""
from __future__ import annotations

import argparse
import resource

import numpy as np

from ser_core.cli import _config
from ser_core.head import HeadConfig, build_head
from ser_core.scoring import predict_states


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("heads", nargs="*", default=["layers=mix", "layers=concat"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    segments = [rng.standard_normal((7, int(rng.uniform(15, 300)), 512)).astype(np.float32) for _ in range(200)]
    speech_s = sum(s.shape[1] for s in segments) / 50
    heads = [build_head(_config(HeadConfig, None, spec.split()), 7, 512) for spec in args.heads]
    best = [np.inf] * len(heads)
    for head in heads:  # trace once, unmeasured
        predict_states(head, segments[:10])
    for _ in range(args.rounds):
        for i, head in enumerate(heads):
            t0 = _cpu_seconds()
            predict_states(head, segments)
            best[i] = min(best[i], _cpu_seconds() - t0)
    print(f"{len(segments)} segments, {speech_s:.0f} s of speech frames; best of {args.rounds} rounds")
    for spec, head, cpu in zip(args.heads, heads, best):
        print(f"{spec:>30}: {head.count_params() / 1e6:.2f} M parameters, {cpu:.2f} CPU s, "
              f"{speech_s / cpu:5.0f}x real time per core, {best[0] / cpu:.2f}x the speed of the first")


if __name__ == "__main__":
    main()
