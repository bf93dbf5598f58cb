"""Speaker-normalised prosody: utterance functionals, standardised over one speaker's segments.

A segment's `functionals` (statistics over its frames of pitch, level, spectral shape and
cepstrum, within the feature band) say little on their own: a high pitch is a high voice
as often as an excited one. Standardised over other segments of the same speaker
(`group_standardize`), they say how this segment departs from that speaker's range. A
`ProsodyModel` (multinomial logistic regression) scores them, and `fuse` averages its
probabilities with a CNN's. `benchmarks/speaker_prosody.py` measures this on held-out
speakers; it is not part of the shipped scoring, because a speaker whose segments are all
in one mood has that mood standardised away (docs/RESULTS.md, "Speaker-normalised prosody").
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import librosa
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from .audio import AudioError, View, load_preprocessed
from .config import FeatureConfig
from .labels import EMOTIONS

FUNCTIONALS_VERSION = 1  # raise whenever `functionals` computes anything differently (cache key)
N_MFCC = 20
F0_RANGE_HZ = (70.0, 450.0)
LOUD_DB = -25.0          # frames within this of the segment's loudest count as speaking
FRAME_S, HOP_S = 0.032, 0.010   # analysis frames: 32 ms every 10 ms (pitch: 64 ms)
_STATS = ("mean", "sd", "p10", "p50", "p90")
_TRACKS = ([f"mfcc{i}" for i in range(N_MFCC)] + [f"dmfcc{i}" for i in range(N_MFCC)]
           + ["logmel", "centroid_khz", "bandwidth_khz", "log_flatness", "level_db", "dlevel_db", "f0_st", "df0_st"])
FUNCTIONAL_NAMES: tuple[str, ...] = tuple(f"{t}_{s}" for t in _TRACKS for s in _STATS) + ("f0_slope_st", "loud_frac")


def _stats(track: np.ndarray) -> list[float]:
    track = track if track.size else np.zeros(1)
    p10, p50, p90 = np.percentile(track, [10, 50, 90])
    return [float(track.mean()), float(track.std()), float(p10), float(p50), float(p90)]


def functionals(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """A preprocessed waveform (`ser_core.audio.preprocess` with `cfg`) -> its functionals
    (`FUNCTIONAL_NAMES`), computed on the cfg.fmin–fmax band only, so a phone line and a
    studio give the same features, and on the waveform before pre-emphasis."""
    sr = cfg.sample_rate
    if cfg.preemphasis:
        y = librosa.effects.deemphasis(y, coef=cfg.preemphasis)
    n_fft, hop = int(FRAME_S * sr), int(HOP_S * sr)
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    band = (freqs >= cfg.fmin) & (freqs <= (cfg.fmax or sr / 2))
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=40, fmin=cfg.fmin, fmax=cfg.fmax)
    log_mel = librosa.power_to_db(mel + 1e-10, ref=np.max)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)
    delta = librosa.feature.delta(mfcc, mode="nearest")
    mag = np.sqrt(power[band])
    level = librosa.power_to_db(power[band].sum(axis=0) + 1e-10)
    level -= level.max()
    f0 = librosa.yin(y, fmin=F0_RANGE_HZ[0], fmax=F0_RANGE_HZ[1], sr=sr, frame_length=2 * n_fft, hop_length=hop)
    n = min(f0.size, level.size)
    loud = level[:n] > LOUD_DB
    semitones = 12 * np.log2(f0[:n][loud] / 100.0)
    tracks = [*mfcc, *delta, log_mel.mean(axis=0),
              librosa.feature.spectral_centroid(S=mag, freq=freqs[band])[0] / 1000,
              librosa.feature.spectral_bandwidth(S=mag, freq=freqs[band])[0] / 1000,
              np.log(librosa.feature.spectral_flatness(S=mag)[0] + 1e-6),
              level, np.abs(np.diff(level)), semitones, np.abs(np.diff(semitones))]
    slope = float(np.polyfit(np.arange(semitones.size), semitones, 1)[0]) if semitones.size > 2 else 0.0
    return np.array([v for t in tracks for v in _stats(np.asarray(t))] + [slope, float(loud.mean())], np.float32)


def group_standardize(x: np.ndarray) -> np.ndarray:
    """Rows of one speaker's functionals -> each column standardised over those rows."""
    x = np.asarray(x, np.float64)
    return ((x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)).astype(np.float32)


def standardize_per_speaker(feats: dict[str, pd.DataFrame], df: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Functionals of the manifest rows `df` under each view (`feats`: view -> frame indexed
    like `df`), standardised over each actor, vocal channel and view; with the rows' manifest
    entries in the same order."""
    parts = [(feats[v].loc[g.index].to_numpy(), g) for v in feats for _, g in df.groupby(["actor", "vocal_channel"])]
    return np.concatenate([group_standardize(x) for x, _ in parts]), pd.concat([g for _, g in parts])


def _functionals_or_error(path: str, cfg: FeatureConfig, view: View) -> np.ndarray | str:
    try:
        return functionals(load_preprocessed(path, cfg, view), cfg)
    except AudioError as exc:
        return str(exc)


def corpus_functionals(paths: Sequence[str], cfg: FeatureConfig, view: View = View(), n_jobs: int = -1) -> pd.DataFrame:
    """Functionals of many files (one row each, indexed by path); unreadable or too-short
    files are left out and named in `attrs['errors']`."""
    out = Parallel(n_jobs=n_jobs, batch_size=16)(delayed(_functionals_or_error)(str(p), cfg, view) for p in paths)
    good = [(str(p), v) for p, v in zip(paths, out) if not isinstance(v, str)]
    df = pd.DataFrame(np.stack([v for _, v in good]) if good else np.zeros((0, len(FUNCTIONAL_NAMES))),
                      index=pd.Index([p for p, _ in good], name="path"), columns=list(FUNCTIONAL_NAMES))
    df.attrs["errors"] = {str(p): v for p, v in zip(paths, out) if isinstance(v, str)}
    return df


@dataclass(frozen=True)
class ProsodyModel:
    """Multinomial logistic regression on speaker-standardised functionals: input scaling
    (`mean`, `sd`), then softmax(z @ coef.T + intercept) over `EMOTIONS`."""

    mean: np.ndarray
    sd: np.ndarray
    coef: np.ndarray        # (len(EMOTIONS), inputs)
    intercept: np.ndarray   # (len(EMOTIONS),)
    c: float                # the regularisation it was fitted with (inverse strength)

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        """Speaker-standardised functionals (n, features) -> emotion probabilities (n, 8)."""
        logits = ((np.asarray(z, np.float64) - self.mean) / self.sd) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_prosody(z: np.ndarray, labels: Sequence[str], speakers: Sequence[int], c_grid: Sequence[float] = (0.003, 0.01, 0.03, 0.1),
                folds: int = 5) -> ProsodyModel:
    """Fit on speaker-standardised functionals `z` with emotion `labels`, the regularisation
    chosen from `c_grid` by unweighted average recall over `folds` groups of `speakers`
    (a single value is taken as it is)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    z, y = np.asarray(z, np.float64), np.array([EMOTIONS.index(e) for e in labels])
    mean, sd = z.mean(axis=0), z.std(axis=0) + 1e-6
    x = (z - mean) / sd
    best = float(c_grid[0])
    if len(c_grid) > 1:
        cv = list(GroupKFold(folds).split(x, y, np.asarray(speakers)))
        scores = [cross_val_score(LogisticRegression(C=c, max_iter=3000), x, y, cv=cv, scoring="balanced_accuracy").mean()
                  for c in c_grid]
        best = float(c_grid[int(np.argmax(scores))])
    lr = LogisticRegression(C=best, max_iter=3000).fit(x, y)
    coef, intercept = np.zeros((len(EMOTIONS), x.shape[1])), np.full(len(EMOTIONS), -1e9)
    binary = len(lr.classes_) == 2  # one row of logits: the second class's against the first's 0
    coef[lr.classes_] = np.vstack([np.zeros_like(lr.coef_), lr.coef_]) if binary else lr.coef_
    intercept[lr.classes_] = np.concatenate([[0.0], lr.intercept_]) if binary else lr.intercept_
    return ProsodyModel(mean, sd, coef, intercept, best)


def fuse(cnn: np.ndarray, prosody: np.ndarray, weight: float) -> np.ndarray:
    """The CNN's emotion probabilities averaged with the prosody model's, `weight` on the latter."""
    return ((1.0 - weight) * cnn + weight * prosody).astype(np.float32)
