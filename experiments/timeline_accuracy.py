"""Segment-level accuracy of the emotion timeline on the example calls.

Runs the job on examples/calls with a bundle, then gives each segment the true emotion
of the turn (same call and channel) it overlaps most, from examples/calls/truth.csv.
Prints accuracy, UAR and macro-F1 over segments, and how many segments fell outside
every true turn (false speech). Says so when the bundle was trained on the calls' actors
(the shipped default is): then the figure is not a held-out score.

    python experiments/timeline_accuracy.py [--model default]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from pipelines import score_calls
from ser_core.bundle import load_bundle
from ser_core.labels import EMOTIONS, parse_ravdess_name
from ser_core.metrics import classification_metrics

CALLS = Path(__file__).resolve().parents[1] / "examples" / "calls"


def label_segments(segments: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """True emotion of the turn each segment overlaps most (None when it overlaps none)."""
    labels = []
    for _, s in segments.iterrows():
        turns = truth[(truth["call_id"] == s["call_id"]) & (truth["channel"] == s["channel"])]
        overlap = (turns["end_s"].clip(upper=s["end_s"]) - turns["start_s"].clip(lower=s["start_s"])).clip(lower=0)
        labels.append(turns["emotion"].iloc[overlap.argmax()] if len(turns) and overlap.max() > 0 else None)
    return pd.Series(labels, index=segments.index)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    args = ap.parse_args()
    truth = pd.read_csv(CALLS / "truth.csv")
    with tempfile.TemporaryDirectory() as out:
        score_calls.run([f"--input={CALLS}/*.wav", f"--output={out}", f"--model={args.model}", "--date=2000-01-01"])
        segments = pd.read_parquet(Path(out) / "segments" / "date=2000-01-01")
    segments["truth"] = label_segments(segments, truth)
    scored = segments.dropna(subset=["truth"])
    m = classification_metrics(scored["truth"].map(EMOTIONS.index), scored["emotion"].map(EMOTIONS.index))
    print(f"{len(segments)} segments, {len(segments) - len(scored)} outside every true turn")
    print(f"segment-level accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f}, macro-F1 {m['macro_f1']:.3f} "
          f"over {len(scored)} segments of {truth['call_id'].nunique()} calls")
    for role, g in scored.groupby("role"):
        print(f"  {role}: accuracy {(g['truth'] == g['emotion']).mean():.3f} on {len(g)} segments")
    heard = set(load_bundle(args.model).info.get("trained_on", {}).get("actors", [])) & {
        parse_ravdess_name(src).actor for src in truth["source"]}
    if heard:
        print(f"NOT HELD OUT: the bundle was trained on actors {sorted(heard)} of these calls")


if __name__ == "__main__":
    main()
