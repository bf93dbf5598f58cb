"""Held-out accuracy of fold models under the recording conditions calls arrive in.

    python experiments/robustness.py runs/NAME [runs/OTHER ...] [--folds 1,2] [--conditions clean,babble_10db]

For every fold model of each run (`RUN/fold_K/bundle`, as `ser train --protocol folds`
leaves them), the clips of the fold's held-out actors are degraded (each condition seeded
by the file name), written as audio files and scored by `predict_files`, exactly as `ser
predict` scores a user's recordings. Prints UAR and intensity accuracy per condition and
run (mean over the folds) and their difference to clean, side by side; a clip that cannot
be scored counts as wrong. The conditions are simulated: they say how a model degrades, not what it scores on
real recordings of that kind.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ser_core.audio import load_audio, resample, telephone_channel, trim_silence
from ser_core.training.views import babble, mix_at_snr, room_reverb

# name -> (y, sr, rng, other talkers) -> (audio, file rate, soundfile format, subtype)
Condition = Callable[[np.ndarray, int, np.random.Generator, list[np.ndarray]], tuple[np.ndarray, int, str, str]]


def _white(snr_db: float) -> Condition:
    return lambda y, sr, rng, o: (mix_at_snr(y, rng.standard_normal(y.size), snr_db), sr, "WAV", "PCM_16")


def _babble(snr_db: float, cut: bool = False) -> Condition:
    """Four of the other talkers at once, `snr_db` below the speech; with `cut`, only over
    the clean clip's trim (a diagnosis: what the babble costs when the trim is not fooled)."""
    def mix(y: np.ndarray, sr: int, rng: np.random.Generator, o: list[np.ndarray]) -> tuple[np.ndarray, int, str, str]:
        y = trim_silence(y, 30.0, noise_margin_db=10.0)[0] if cut else y
        return mix_at_snr(y, babble(y.size, o, rng, talkers=4), snr_db), sr, "WAV", "PCM_16"
    return mix


def _click(y: np.ndarray, sr: int) -> np.ndarray:
    """A 2 ms full-scale click 0.1 s into the recording (a handset knock, a key press)."""
    z = y.copy()
    z[int(0.1 * sr) : int(0.102 * sr)] = 1.0
    return z


def _middle(seconds: float) -> Condition:
    """The middle `seconds` of the clip's 30 dB trim."""
    def cut(y: np.ndarray, sr: int, rng: np.random.Generator, o: list[np.ndarray]) -> tuple[np.ndarray, int, str, str]:
        speech = trim_silence(y, 30.0)[0]
        n = int(seconds * sr)
        start = max(0, (speech.size - n) // 2)
        return speech[start : start + n], sr, "WAV", "PCM_16"
    return cut


CONDITIONS: dict[str, Condition] = {
    "clean": lambda y, sr, rng, o: (y, sr, "WAV", "PCM_16"),
    "quiet_-20db": lambda y, sr, rng, o: (y * 10 ** (-20 / 20), sr, "WAV", "FLOAT"),
    "quiet_-20db_16bit": lambda y, sr, rng, o: (y * 10 ** (-20 / 20), sr, "WAV", "PCM_16"),
    "clipped_+20db": lambda y, sr, rng, o: (np.clip(y * 10, -1, 1), sr, "WAV", "PCM_16"),
    **{f"white_{snr}db": _white(snr) for snr in (10, 20)},
    **{f"babble_{snr}db": _babble(snr) for snr in (10, 20)},
    "babble_20db_clean_trim": _babble(20, cut=True),
    # the clip as a corpus or a VAD delivers it: cut to its own 30 dB trim, little silence left around it
    "pre_trimmed": lambda y, sr, rng, o: (trim_silence(y, 30.0)[0], sr, "WAV", "PCM_16"),
    # a short call turn: the middle of the trimmed sentence
    **{f"short_{s}s": _middle(s) for s in (1.0, 0.6)},
    "click": lambda y, sr, rng, o: (_click(y, sr), sr, "WAV", "PCM_16"),
    "dc_offset": lambda y, sr, rng, o: (y + 0.1 * np.max(np.abs(y)), sr, "WAV", "PCM_16"),
    "wideband_44khz": lambda y, sr, rng, o: (resample(y, sr, 44100), 44100, "WAV", "PCM_16"),
    "narrowband_8khz": lambda y, sr, rng, o: (resample(y, sr, 8000), 8000, "WAV", "PCM_16"),
    "mp3": lambda y, sr, rng, o: (y, sr, "MP3", "MPEG_LAYER_III"),
    "telephone": lambda y, sr, rng, o: (telephone_channel(y, sr, seed=int(rng.integers(2**31))), sr, "WAV", "PCM_16"),
    "room": lambda y, sr, rng, o: (room_reverb(y, sr, seed=int(rng.integers(2**31))), sr, "WAV", "PCM_16"),
    "room_telephone": lambda y, sr, rng, o: (
        telephone_channel(room_reverb(y, sr, seed=int(rng.integers(2**31))), sr, seed=int(rng.integers(2**31))),
        sr, "WAV", "PCM_16"),
}
EXTENSIONS = {"WAV": ".wav", "MP3": ".mp3"}


def degrade_files(paths: list[str], condition: str, others: list[np.ndarray], out_dir: Path) -> list[str]:
    """Write each file of `paths` under `condition` into `out_dir`; the written paths."""
    written = []
    for p in paths:
        y, sr = load_audio(p, sr=None, mono=True)
        rng = np.random.default_rng(zlib.crc32(f"{condition}/{Path(p).name}".encode()))
        z, rate, fmt, subtype = CONDITIONS[condition](y, sr, rng, others)
        dest = out_dir / (Path(p).stem + EXTENSIONS[fmt])
        sf.write(dest, np.clip(z, -1, 1), rate, format=fmt, subtype=subtype)
        written.append(str(dest))
    return written


def scores_on(bundle, files: list[str], clips: pd.DataFrame) -> tuple[float, float]:
    """UAR of `bundle` on audio `files` of the manifest rows `clips`, and its intensity
    accuracy (normal vs strong); an unscored file is wrong on both."""
    from ser_core.bundle import predict_files
    from ser_core.labels import EMOTIONS
    from ser_core.metrics import unweighted_average_recall

    scored = predict_files(bundle, files)
    pred = [EMOTIONS.index(label) if isinstance(label, str) else -1 for label in scored["label"]]
    uar = unweighted_average_recall([EMOTIONS.index(e) for e in clips["emotion"]], pred)
    return uar, float(np.mean(scored["intensity"].to_numpy() == clips["intensity"].to_numpy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories holding fold_K/bundle")
    ap.add_argument("--folds", help="comma-separated folds (default: every fold with a bundle in all runs)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated, from: " + ", ".join(CONDITIONS))
    ap.add_argument("--channels", choices=("speech", "song", "both"), default="speech", help="held-out clips scored")
    ap.add_argument("--data", help="data folder (default: $SER_DATA_DIR or ../shared/data)")
    ap.add_argument("--pad-mode", help="what-if: score with this numpy padding (e.g. constant, wrap) instead of "
                                       "the padding each bundle was trained with, which the job always uses")
    ap.add_argument("--wideband-min-range", type=float, help="what-if: route audio to a bundle's wideband companion "
                    "from this high-band range (dB) instead of the shipped rule's")
    args = ap.parse_args()

    import ser_core.audio
    from ser_core.bundle import load_bundle
    from ser_core.training.cnn_protocols import load_corpus
    from ser_core.training.data import data_dir

    if args.wideband_min_range is not None:  # read by `is_wideband` at each call
        ser_core.audio.WIDEBAND_MIN_RANGE_DB = args.wideband_min_range

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
    corpus = load_corpus(root, args.channels)
    speech = load_corpus(root, "speech")
    uar, intensity = {}, {}  # (run, condition) -> per-fold UARs, intensity accuracies
    for k in folds:
        clips = corpus[corpus["fold"] == k]
        # babble talkers of a clip: 24 speech clips of the fold's other held-out actors, fixed per fold and
        # actor; voices no model of the fold has heard, not even as training babble (`babble_augment`)
        held_out = speech[speech["fold"] == k]
        others = {a: [load_audio(p, sr=16000, mono=True)[0]
                      for p in held_out[held_out["actor"] != a].sample(24, random_state=k)["path"]]
                  for a in clips["actor"].unique()}
        bundles = {run.name: load_bundle(run / f"fold_{k}" / "bundle") for run in args.runs}
        for b in bundles.values() if args.pad_mode else ():
            b.feature_config = dataclasses.replace(b.feature_config, pad_mode=args.pad_mode)
        for c in conditions:  # each condition's files written once, scored by every run's model
            with tempfile.TemporaryDirectory() as tmp:
                written = {}
                for a, group in clips.groupby("actor"):
                    written.update(zip(group.index, degrade_files(list(group["path"]), c, others[a], Path(tmp))))
                files = [written[i] for i in clips.index]
                for name, bundle in bundles.items():
                    u, i = scores_on(bundle, files, clips)
                    uar.setdefault((name, c), []).append(u)
                    intensity.setdefault((name, c), []).append(i)
                    print(f"fold {k} {name} {c}: UAR {u:.3f}, intensity accuracy {i:.3f}", flush=True)
    names = [r.name for r in args.runs]
    for title, table in (("UAR", uar), ("intensity accuracy", intensity)):
        print(f"\nheld-out {args.channels} {title}, mean over folds {', '.join(map(str, folds))} (difference to clean)")
        print("| condition | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for c in conditions:
            cells = []
            for n in names:
                m = float(np.mean(table[(n, c)]))
                diff = "clean" in conditions and c != "clean"
                cells.append(f"{m:.3f}" + (f" ({m - np.mean(table[(n, 'clean')]):+.3f})" if diff else ""))
            print(f"| {c} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
