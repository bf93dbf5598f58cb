"""Segment-level emotion accuracy of the job on synthetic phone calls of voices a bundle never heard.

For each split of a ``ser train --protocol folds`` run: stereo calls whose two channels take
turns, each channel one of the split's held-out speakers (whole clips, trimmed to their speech,
0.3-1.5 s apart, level varied by ±6 dB), through a telephone line (300-3400 Hz, 8 kHz, noise
20 dB under the speech, G.711 mu-law); the job scores them with that split's bundle and each
segment takes the emotion of the turn it overlaps most (`timeline_accuracy.label_segments`).
Prints, per run, accuracy, UAR and macro-F1 over all segments (the job's own labels, argmax
over all 8 classes; UAR over the true classes present), the share of angry segments read as
fearful and the share labelled with a class the test corpus lacks (CREMA-D: calm, surprised).
Seeded: the same arguments build the same calls.

    SER_DATA_DIR=../shared/data PYTHONPATH=. python experiments/heldout_calls.py RUN [RUN ...] [--calls 4] [--seed 0]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from pipelines import score_calls
from ser_core.labels import EMOTIONS
from ser_core.metrics import classification_metrics
from ser_core.training.corpora import load_corpora
from ser_core.training.data import data_dir

HERE = Path(__file__).resolve().parent


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


talk_time, timeline = _sibling("talk_time"), _sibling("timeline_accuracy")
SR, TURNS = talk_time.SR, 12


def build_call(pools: list[pd.DataFrame], call_id: str, rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """A stereo call (samples, 2) of `TURNS` alternating turns, channel k from `pools[k]`, and its truth rows."""
    turns, t = [], 0.5
    for i in range(TURNS):
        ch = i % 2
        row = pools[ch].iloc[rng.integers(len(pools[ch]))]
        y = talk_time.load_clip(row["path"])
        y = y / np.sqrt(np.mean(y**2)) * 10 ** ((talk_time.SPEECH_DBFS + rng.uniform(-6, 6)) / 20)
        turns.append((ch, int(t * SR), y, row["emotion"]))
        t += y.size / SR + rng.uniform(0.3, 1.5)
    stereo = np.zeros((int((t + 0.5) * SR), 2), np.float32)
    truth = []
    for ch, start, y, emotion in turns:
        stereo[start:start + y.size, ch] += y
        truth.append({"call_id": call_id, "channel": ch, "start_s": start / SR, "end_s": (start + y.size) / SR,
                      "emotion": emotion})
    for ch in range(2):
        mask = stereo[:, ch] != 0
        stereo[:, ch] = talk_time.through_line(stereo[:, ch], mask, 20.0, rng)
    return stereo, pd.DataFrame(truth)


def score_run(run: Path, df: pd.DataFrame, n_calls: int, seed: int) -> pd.DataFrame:
    """Every split's calls scored by that split's bundle: one row per segment with its truth."""
    rows = []
    for k, split in enumerate(sorted(p for p in run.iterdir() if (p / "fold.json").exists())):
        speakers = json.loads((split / "fold.json").read_text())["test_speakers"]
        rng = np.random.default_rng([seed, k])
        with tempfile.TemporaryDirectory() as tmp:
            calls, truth = Path(tmp) / "calls", []
            calls.mkdir()
            for c in range(n_calls):
                pair = rng.choice(len(speakers), 2, replace=False)
                pools = [df[df["speaker"] == speakers[j]] for j in pair]
                stereo, t = build_call(pools, f"{split.name}_call_{c}", rng)
                sf.write(calls / f"{split.name}_call_{c}.wav", stereo, SR, subtype="ULAW")
                truth.append(t)
            score_calls.run([f"--input={calls}/*.wav", f"--output={tmp}/out", f"--model={split / 'bundle'}",
                             "--date=2000-01-01"])
            seg = pd.read_parquet(Path(tmp) / "out" / "segments" / "date=2000-01-01")
        seg["truth"] = timeline.label_segments(seg, pd.concat(truth, ignore_index=True))
        rows.append(seg.assign(split=split.name))
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="folders of `ser train --protocol folds` runs")
    ap.add_argument("--calls", type=int, default=4, help="calls per split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="data folder (default: SER_DATA_DIR or ../shared/data)")
    args = ap.parse_args()
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        df = load_corpora(args.data or data_dir(), [config["test_corpus"]])
        seg = score_run(run, df, args.calls, args.seed)
        scored = seg.dropna(subset=["truth"])
        m = classification_metrics(scored["truth"].map(EMOTIONS.index), scored["emotion"].map(EMOTIONS.index))
        angry = scored[scored["truth"] == "angry"]
        foreign = ~scored["emotion"].isin(set(df["emotion"]))
        print(f"{run}: {scored['call_id'].nunique()} calls of held-out {config['test_corpus']} speakers, "
              f"{len(scored)} segments ({len(seg) - len(scored)} outside every turn): accuracy {m['accuracy']:.3f}, "
              f"UAR {m['uar']:.3f}, macro-F1 {m['macro_f1']:.3f}; angry read as fearful "
              f"{(angry['emotion'] == 'fearful').mean():.3f} of {len(angry)}; labelled with a class the corpus "
              f"lacks {foreign.mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
