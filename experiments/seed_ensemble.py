"""Seed ensembles of encoder heads: the mean of several runs' held-out probabilities, scored.

Give runs of one protocol that differ only in `--train seed=S` (same test clips): prints each
run's UAR / accuracy / macro-F1 per condition (clean, telephone), their mean, and the scores of
the runs' averaged probabilities (argmax over the run's classes, as `ser train` scores them).

    PYTHONPATH=. python experiments/seed_ensemble.py RUN_SEED0 RUN_SEED1 RUN_SEED2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ser_core.metrics import classification_metrics

KEY = ["split", "condition", "path"]


def scores(frame: pd.DataFrame, classes: list[str]) -> dict[str, float]:
    """UAR, accuracy and macro-F1 of `frame`'s probabilities, argmax over `classes`."""
    probs = frame[[f"p_{c}" for c in classes]].to_numpy()
    pred = np.asarray(classes)[probs.argmax(axis=1)]
    index = {c: i for i, c in enumerate(classes)}
    m = classification_metrics([index[t] for t in frame["true"]], [index[p] for p in pred], labels=classes)
    return {k: m[k] for k in ("uar", "accuracy", "macro_f1")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    classes = json.loads((args.runs[0] / "metrics.json").read_text())["classes"]
    preds = [pd.read_csv(r / "predictions.csv").sort_values(KEY).reset_index(drop=True) for r in args.runs]
    if any(not p[KEY].equals(preds[0][KEY]) for p in preds[1:]):
        raise SystemExit("the runs were not scored on the same clips")
    mean = preds[0].copy()
    cols = [c for c in mean.columns if c.startswith("p_")]
    mean[cols] = np.mean([p[cols].to_numpy() for p in preds], axis=0)
    print(f"{len(args.runs)} runs, classes {','.join(classes)}")
    for condition in preds[0]["condition"].unique():
        each = [scores(p[p["condition"] == condition], classes) for p in preds]
        both = scores(mean[mean["condition"] == condition], classes)
        rows = [(run.name, s) for run, s in zip(args.runs, each)]
        rows += [("mean of the runs", {k: np.mean([s[k] for s in each]) for k in each[0]}), ("ensemble (mean probs)", both)]
        for name, s in rows:
            print(f"  {condition:<10} {name:<24} " + " / ".join(f"{s[k]:.3f}" for k in ("uar", "accuracy", "macro_f1")))


if __name__ == "__main__":
    main()
