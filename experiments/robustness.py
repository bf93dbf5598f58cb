"""Held-out UAR of fold models under the recording conditions calls arrive in.

    python experiments/robustness.py runs/NAME [runs/OTHER ...] [--corpus crema_d] [--folds 1,2] [--conditions clean,noise]

For every fold model of each run (`RUN/fold_K/bundle`, as `ser train --protocol folds` leaves
them, for the encoder or a CNN), the clips of the fold's held-out speakers of `--corpus` are
degraded (each condition seeded by the file name), written as audio files and scored by
`predict_files`, exactly as `ser evaluate` scores a user's recordings, with the label chosen
among the corpus's own classes. The degradations are the training views' own
(`ser_core.training.views`: noise, room, telephone line, MP3) plus level, length and format
changes that no model trains on. Prints UAR per condition and run (mean over the folds) and
its difference to clean, side by side; a clip that cannot be scored counts as wrong. The
conditions are simulated: they say how a model degrades, not what it scores on real
recordings of that kind.
"""
from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ser_core.audio import load_audio, resample, trim_silence
from ser_core.training.views import View

# y, sr, the file's name -> (audio, file rate, soundfile format, subtype)
Condition = Callable[[np.ndarray, int, str], tuple[np.ndarray, int, str, str]]


def _view(**how: bool) -> Condition:
    """A training view (`View`), written as 16-bit WAV (an MP3 view is decoded back first)."""
    return lambda y, sr, name: (View(**how).apply(y, sr, name), sr, "WAV", "PCM_16")


def _middle(seconds: float) -> Condition:
    """The middle `seconds` of the clip's 30 dB trim: a short call turn."""
    def cut(y: np.ndarray, sr: int, name: str) -> tuple[np.ndarray, int, str, str]:
        speech = trim_silence(y, top_db=30.0)[0]
        n = int(seconds * sr)
        start = max(0, (speech.size - n) // 2)
        return speech[start : start + n], sr, "WAV", "PCM_16"
    return cut


def _click(y: np.ndarray, sr: int, name: str) -> tuple[np.ndarray, int, str, str]:
    """A 2 ms full-scale click 0.1 s into the recording (a handset knock, a key press)."""
    z = y.copy()
    z[int(0.1 * sr) : int(0.102 * sr)] = 1.0
    return z, sr, "WAV", "PCM_16"


CONDITIONS: dict[str, Condition] = {
    "clean": lambda y, sr, name: (y, sr, "WAV", "PCM_16"),
    "noise": _view(noise=True),          # white or pink, 0-20 dB SNR
    "room": _view(room=True),            # RT60 0.2-0.8 s
    "telephone": _view(telephone=True),  # 300-3400 Hz, G.711 mu-law, line noise
    "codec": _view(codec=True),          # MP3 at a random compression level
    "room_telephone": _view(room=True, telephone=True),
    "noise_telephone": _view(noise=True, telephone=True),
    "quiet_-20db": lambda y, sr, name: (y * 10 ** (-20 / 20), sr, "WAV", "PCM_16"),
    "clipped_+20db": lambda y, sr, name: (np.clip(y * 10, -1, 1), sr, "WAV", "PCM_16"),
    "dc_offset": lambda y, sr, name: (y + 0.1 * np.max(np.abs(y)), sr, "WAV", "PCM_16"),
    "click": _click,
    **{f"short_{s}s": _middle(s) for s in (1.0, 0.6)},
    "narrowband_8khz": lambda y, sr, name: (resample(y, sr, 8000), 8000, "WAV", "PCM_16"),
    "wideband_44khz": lambda y, sr, name: (resample(y, sr, 44100), 44100, "WAV", "PCM_16"),
}


def degrade_files(paths: list[str], condition: str, out_dir: Path) -> list[str]:
    """Write each file of `paths` under `condition` into `out_dir` (16-bit WAV); the written paths."""
    written = []
    for p in paths:
        y, sr = load_audio(p, sr=None, mono=True)
        z, rate, fmt, subtype = CONDITIONS[condition](y, sr, f"{condition}/{Path(p).name}")
        dest = out_dir / (Path(p).stem + ".wav")
        sf.write(dest, np.clip(z, -1, 1), rate, format=fmt, subtype=subtype)
        written.append(str(dest))
    return written


def uar_on(bundle, files: list[str], truth: pd.Series, classes: list[str]) -> float:
    """UAR of `bundle` on audio `files` whose true labels are `truth`, the label chosen among
    `classes`; an unscored file counts as wrong."""
    from ser_core.bundle import predict_files
    from ser_core.labels import EMOTIONS
    from ser_core.metrics import unweighted_average_recall

    scored = predict_files(bundle, files)
    ok = scored["error"].isna().to_numpy()
    pred = np.full(len(files), -1)
    pred[ok] = [EMOTIONS.index(c) for c in scored.loc[ok, classes].idxmax(axis=1)]
    return unweighted_average_recall([EMOTIONS.index(e) for e in truth], pred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories holding fold_K/bundle")
    ap.add_argument("--corpus", choices=("ravdess", "crema_d"), default="ravdess", help="the corpus the folds hold out")
    ap.add_argument("--folds", help="comma-separated folds (default: every fold with a bundle in all runs)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated, from: " + ", ".join(CONDITIONS))
    ap.add_argument("--data", help="data folder (default: $SER_DATA_DIR or ../shared/data)")
    args = ap.parse_args()

    from ser_core.bundle import load_bundle
    from ser_core.training.corpora import CLASSES, load_corpora
    from ser_core.training.data import data_dir

    root = data_dir(args.data)
    if root is None:
        raise SystemExit("no data: pass --data or set SER_DATA_DIR")
    conditions = args.conditions.split(",")
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise SystemExit(f"unknown conditions {unknown}")
    if args.folds:
        folds = [int(k) for k in args.folds.split(",")]
    else:
        folds = [k for k in range(1, 7) if all((r / f"fold_{k}" / "bundle").is_dir() for r in args.runs)]
    if not folds:
        raise SystemExit("no fold has a bundle in every run")
    corpus = load_corpora(root, [args.corpus])
    classes = list(CLASSES[args.corpus])
    uar: dict[tuple[str, str], list[float]] = {}
    for k in folds:
        clips = corpus[corpus["fold"] == k]
        bundles = {run.name: load_bundle(run / f"fold_{k}" / "bundle") for run in args.runs}
        for c in conditions:  # each condition's files written once, scored by every run's model
            with tempfile.TemporaryDirectory() as tmp:
                files = degrade_files(list(clips["path"]), c, Path(tmp))
                for name, bundle in bundles.items():
                    u = uar_on(bundle, files, clips["emotion"], classes)
                    uar.setdefault((name, c), []).append(u)
                    print(f"fold {k} {name} {c}: UAR {u:.3f}", flush=True)
    names = [r.name for r in args.runs]
    print(f"\nheld-out {args.corpus} UAR over its {len(classes)} classes, mean over folds "
          f"{', '.join(map(str, folds))} (difference to clean)")
    print("| condition | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for c in conditions:
        cells = []
        for n in names:
            m = float(np.mean(uar[(n, c)]))
            diff = "clean" in conditions and c != "clean"
            cells.append(f"{m:.3f}" + (f" ({m - np.mean(uar[(n, 'clean')]):+.3f})" if diff else ""))
        print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
