"""Feature extraction for the whole RAVDESS corpus (2452 clips), cold (no cache).

Prints wall time, clips per second and audio seconds per wall second for one worker
and for all cores, side by side in one run, and the ratio between them.

    python benchmarks/feature_extraction.py [--data DIR] [--channels both]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

from ser_core.config import FeatureConfig
from ser_core.training.cnn_features import extract_corpus
from ser_core.training.cnn_protocols import load_corpus
from ser_core.training.data import data_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="data folder (default: $SER_DATA_DIR or ../shared/data)")
    ap.add_argument("--channels", default="both", choices=("speech", "song", "both"))
    args = ap.parse_args()
    df = load_corpus(data_dir(args.data), args.channels)
    cfg = FeatureConfig()
    audio_s = float(df["duration_s"].sum())
    print(f"{len(df)} clips, {audio_s / 60:.1f} min of audio, {os.cpu_count()} cores, config {cfg.digest()}")
    rows = []
    for jobs in (1, -1):
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            feats = extract_corpus(df["path"], cfg, cache_dir=cache, n_jobs=jobs, progress=False)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            extract_corpus(df["path"], cfg, cache_dir=cache, n_jobs=jobs, progress=False)
            warm = time.perf_counter() - t0
        rows.append((jobs, cold, warm, len(feats.errors)))
        print(f"n_jobs={jobs:>2}: cold {cold:6.1f} s  ({len(df) / cold:6.1f} clips/s, "
              f"{audio_s / cold:6.1f}x real time)  cached {warm:5.2f} s  unusable {len(feats.errors)}")
    print(f"speed-up all cores vs one: {rows[0][1] / rows[1][1]:.2f}x; cache vs cold: {rows[1][1] / rows[1][2]:.0f}x")


if __name__ == "__main__":
    main()
