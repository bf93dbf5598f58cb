"""Which recordings a bundle's wideband companion hears: `is_wideband` under each condition.

    python experiments/wideband_routing.py [--channels speech] [--conditions clean,telephone] [--sample N]

Every clip (or a seeded sample of N) is degraded as `experiments/robustness.py` degrades it
(written as an audio file in the condition's format, so 16-bit quantisation included),
preprocessed with the default `FeatureConfig`, as `ser predict` and the nightly job do, and
classified by `ser_core.audio.is_wideband`. Prints, per condition, the share routed to the
wideband companion, the share that lower range thresholds would route (what-ifs), and the
lowest and highest high-band level and range (`high_band_stats`).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from robustness import CONDITIONS, degrade_files

from ser_core.audio import (
    WIDEBAND_MIN_LEVEL_DB,
    WIDEBAND_MIN_RANGE_DB,
    AudioError,
    high_band_stats,
    is_wideband,
    load_preprocessed,
)
from ser_core.config import FeatureConfig

WHAT_IF_RANGES_DB = (10.0, 15.0)

DEFAULT_CONDITIONS = ("clean", "short_1.0s", "short_0.6s", "quiet_-20db", "noise", "codec", "room", "wideband_44khz",
                      "narrowband_8khz", "telephone", "room_telephone")


def route(files: list[str], cfg: FeatureConfig) -> pd.DataFrame:
    """One row per usable file: high-band level and range, and whether it is wideband."""
    rows = []
    for f in files:
        try:
            y = load_preprocessed(f, cfg)
        except AudioError:
            continue
        level, spread = high_band_stats(y, cfg.sample_rate)
        rows.append({"level_db": level, "range_db": spread, "wideband": is_wideband(y, cfg.sample_rate)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", choices=("speech", "song", "both"), default="speech")
    ap.add_argument("--conditions", default=",".join(DEFAULT_CONDITIONS), help="from: " + ", ".join(CONDITIONS))
    ap.add_argument("--sample", type=int, help="a seeded sample of this many clips (default: all)")
    ap.add_argument("--data", help="data folder (default: $SER_DATA_DIR or ../shared/data)")
    args = ap.parse_args()

    from ser_core.training.cnn_protocols import load_corpus
    from ser_core.training.data import data_dir

    root = data_dir(args.data)
    if root is None:
        raise SystemExit("no data: pass --data or set SER_DATA_DIR")
    corpus = load_corpus(root, args.channels)
    if args.sample:
        corpus = corpus.sample(args.sample, random_state=0)
    cfg = FeatureConfig()
    print(f"{len(corpus)} {args.channels} clips; routed to the wideband companion by `is_wideband` "
          f"(level >= {WIDEBAND_MIN_LEVEL_DB:g} dB and range >= {WIDEBAND_MIN_RANGE_DB:g} dB)")
    what_ifs = " | ".join(f"at range >= {r:g} dB" for r in WHAT_IF_RANGES_DB)
    print(f"| condition | routed wideband | {what_ifs} | level, lowest / highest (dB) | range, lowest / highest (dB) |")
    print("|---|---|" + "---|" * len(WHAT_IF_RANGES_DB) + "---|---|")
    for c in args.conditions.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            r = route(degrade_files(list(corpus["path"]), c, Path(tmp)), cfg)
        finite = r["level_db"][np.isfinite(r["level_db"])]
        levels = f"{finite.min():.1f} / {finite.max():.1f}" if len(finite) else "–"
        shares = " | ".join(f"{((r['level_db'] >= WIDEBAND_MIN_LEVEL_DB) & (r['range_db'] >= t)).mean():.1%}"
                            for t in WHAT_IF_RANGES_DB)
        print(f"| {c} | {r['wideband'].mean():.1%} ({r['wideband'].sum()} of {len(r)}) | {shares} | {levels} | "
              f"{r['range_db'].min():.1f} / {r['range_db'].max():.1f} |", flush=True)


if __name__ == "__main__":
    main()
