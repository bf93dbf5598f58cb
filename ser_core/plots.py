"""Figures: the four representations, training curves, confusion matrices."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import librosa.display  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .audio import load_audio, preprocess, resample, trim_silence  # noqa: E402
from .config import FeatureConfig  # noqa: E402
from .features import mel_filterbank, mel_spectrogram, mfcc, spectrogram  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_audio(path: str | Path, out_dir: str | Path, cfg: FeatureConfig) -> list[Path]:
    """Waveform with the trimmed region marked, and the four representations (unfixed length)."""
    out_dir = Path(out_dir)
    raw, sr = load_audio(path, mono=True)
    raw = resample(raw, sr, cfg.sample_rate)
    _, (start, end) = trim_silence(raw, cfg.trim_db, cfg.n_fft, cfg.hop_length, cfg.trim_noise_margin_db, cfg.sample_rate)
    t = np.arange(raw.size) / cfg.sample_rate
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.plot(t, raw, lw=0.5)
    ax.axvspan(start / cfg.sample_rate, end / cfg.sample_rate, color="tab:orange", alpha=0.25,
               label=f"kept (trim at {cfg.trim_db:g} dB)")
    ax.set(xlabel="time (s)", ylabel="amplitude", title=Path(path).name)
    ax.legend(loc="upper right")
    outputs = [_save(fig, out_dir / "waveform.png")]
    y = preprocess(raw, cfg.sample_rate, cfg)
    reps = {
        "mfcc": (mfcc(y, cfg), f"MFCC ({cfg.n_mfcc} coefficients)"),
        "spectrogram": (spectrogram(y, cfg), "spectrogram (dB, linear bands)"),
        "mel_filterbank": (mel_filterbank(y, cfg), "mel filterbank (log energy, band mean removed)"),
        "mel_spectrogram": (mel_spectrogram(y, cfg), "mel spectrogram (dB)"),
    }
    for name, (data, title) in reps.items():
        fig, ax = plt.subplots(figsize=(8, 3.5))
        img = librosa.display.specshow(data, sr=cfg.sample_rate, hop_length=cfg.hop_length, x_axis="time", ax=ax)
        fig.colorbar(img, ax=ax)
        ax.set(title=title, ylabel="coefficient" if name == "mfcc" else "band")
        outputs.append(_save(fig, out_dir / f"{name}.png"))
    return outputs


def plot_curves(history: pd.DataFrame, path: str | Path) -> Path:
    """Loss and emotion accuracy per epoch, train vs validation."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, label in ((axes[0], "emotion_loss", "emotion loss"), (axes[1], "emotion_accuracy", "emotion accuracy")):
        ax.plot(history["epoch"], history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(history["epoch"], history[f"val_{key}"], label="validation")
        if key.endswith("accuracy") and "val_uar" in history:
            ax.plot(history["epoch"], history["val_uar"], "--", label="validation UAR")
        ax.set(xlabel="epoch", title=label)
        ax.legend()
    return _save(fig, Path(path))


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, normalize: bool) -> Path:
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix" + (" (row-normalised)" if normalize else " (counts)"))
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}" if normalize else int(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax)
    return _save(fig, Path(path))


EMOTION_COLORS = {
    "neutral": "#9e9e9e", "calm": "#64b5f6", "happy": "#ffd54f", "sad": "#5c6bc0",
    "angry": "#e53935", "fearful": "#8e24aa", "disgust": "#6d4c41", "surprised": "#ff9800",
}


def plot_call_timeline(segments: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """One call's emotion timeline: a lane per role with segments coloured by the top
    emotion (opacity = confidence), and each role's valence over time underneath."""
    roles = [r for r in ("agent", "customer", "mixed") if r in set(segments["role"])] or sorted(set(segments["role"]))
    fig, (lanes, val) = plt.subplots(2, 1, figsize=(12, 1.2 + 1.1 * len(roles) + 2.2), sharex=True,
                                     gridspec_kw={"height_ratios": [len(roles), 2]})
    for i, role in enumerate(roles):
        rows = segments[segments["role"] == role].sort_values("start_s")
        for _, r in rows.iterrows():
            lanes.barh(i, r["end_s"] - r["start_s"], left=r["start_s"], height=0.8,
                       color=EMOTION_COLORS.get(r["emotion"], "black"), alpha=0.35 + 0.65 * float(r["confidence"]))
        mid = (rows["start_s"] + rows["end_s"]) / 2
        val.plot(mid, rows["valence"], marker="o", ms=3, label=role)
    lanes.set_yticks(range(len(roles)), roles)
    lanes.invert_yaxis()
    lanes.set_title(title or "emotion timeline")
    handles = [Patch(color=c, label=e) for e, c in EMOTION_COLORS.items()]
    lanes.legend(handles=handles, ncol=8, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.05), frameon=False)
    val.axhline(0, color="grey", lw=0.5)
    val.set(ylim=(-1, 1), ylabel="valence", xlabel="time in call (s)")
    val.legend(fontsize=8)
    return _save(fig, Path(path))
