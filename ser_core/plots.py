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


def _image(data: np.ndarray, path: Path, *, title: str, unit: str, sr: int, hop_length: int, y_axis: str | None = None,
           extent_hz: tuple[float, float] | None = None, ylabel: str | None = None, **mel) -> Path:
    """One time-frequency (or time-coefficient) image with a labelled colour bar."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if extent_hz is not None:  # equal-width linear bands over [lo, hi] Hz
        seconds = data.shape[1] * hop_length / sr
        img = ax.imshow(data, origin="lower", aspect="auto", extent=(0, seconds, *extent_hz), cmap="magma")
        ax.set(xlabel="Time (s)", ylabel="Frequency (Hz)")
    else:
        img = librosa.display.specshow(data, sr=sr, hop_length=hop_length, x_axis="s", y_axis=y_axis, ax=ax, **mel)
        ax.set(xlabel="Time (s)")
        if ylabel:
            ax.set(ylabel=ylabel)
    fig.colorbar(img, ax=ax).set_label(unit)
    ax.set(title=title)
    return _save(fig, path)


def plot_audio(path: str | Path, out_dir: str | Path, cfg: FeatureConfig, *, encoder: bool = False) -> list[Path]:
    """The waveform with the part the model scores marked, then what the model reads.

    Parameters
    ----------
    path : str or Path
        An audio file (its channels averaged).
    out_dir : str or Path
        Folder for the PNG files.
    cfg : FeatureConfig
        The bundle's preprocessing (`bundle.json`): trim, level, rate, and for a CNN its
        feature settings.
    encoder : bool
        True for an encoder bundle: the encoder's input, Whisper's log-mel spectrogram
        (``whisper_log_mel.png``). False for a CNN bundle: its four representations
        (``mfcc.png``, ``spectrogram.png``, ``mel_filterbank.png``, ``mel_spectrogram.png``).

    Returns
    -------
    list of Path
        The figures written, ``waveform.png`` first.

    Raises
    ------
    AudioError
        The file cannot be read, or holds no usable sound (`preprocess`).
    """
    out_dir = Path(out_dir)
    raw, sr = load_audio(path, mono=True)
    raw = resample(raw, sr, cfg.sample_rate)
    _, (start, end) = trim_silence(raw, top_db=cfg.trim_db, frame_length=cfg.n_fft, hop_length=cfg.hop_length,
                                   noise_margin_db=cfg.trim_noise_margin_db, sr=cfg.sample_rate)
    t = np.arange(raw.size) / cfg.sample_rate
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.plot(t, raw, lw=0.5)
    ax.axvspan(start / cfg.sample_rate, end / cfg.sample_rate, color="tab:orange", alpha=0.25,
               label=f"scored (trim at {cfg.trim_db:g} dB below the peak)")
    ax.set(xlabel="Time (s)", ylabel="Amplitude (full scale = 1)", title=Path(path).name)
    ax.legend(loc="upper right")
    outputs = [_save(fig, out_dir / "waveform.png")]
    y = preprocess(raw, cfg.sample_rate, cfg)
    sr, hop = cfg.sample_rate, cfg.hop_length
    if encoder:
        from .encoder import HOP, SAMPLE_RATE, log_mel  # the encoder's own front end

        y = resample(y, sr, SAMPLE_RATE)
        outputs.append(_image(log_mel(y).T, out_dir / "whisper_log_mel.png", sr=SAMPLE_RATE, hop_length=HOP,
                              y_axis="mel", fmin=0.0, fmax=SAMPLE_RATE / 2,
                              title="Encoder input: Whisper log-mel spectrogram (80 bands, 25 ms / 10 ms)",
                              unit="(log10 power, floored 8 below the max, + 4) / 4"))
        return outputs
    lo, hi = cfg.spectrogram_bins
    hz = sr / cfg.n_fft
    mel = {"y_axis": "mel", "fmin": cfg.fmin, "fmax": cfg.fmax or sr / 2}
    outputs += [
        _image(mfcc(y, cfg), out_dir / "mfcc.png", sr=sr, hop_length=hop, ylabel="MFCC coefficient index",
               title=f"MFCC ({cfg.n_mfcc} coefficients of a 128-band log-mel spectrum)", unit="Cepstral value (dB)"),
        _image(spectrogram(y, cfg), out_dir / "spectrogram.png", sr=sr, hop_length=hop, extent_hz=(lo * hz, hi * hz),
               title=f"Spectrogram ({cfg.n_mels} linear bands)", unit="Power (dB re. utterance max)"),
        _image(mel_filterbank(y, cfg), out_dir / "mel_filterbank.png", sr=sr, hop_length=hop, **mel,
               title=f"Mel filterbank ({cfg.n_mels} bands, band mean removed)", unit="Log energy - band mean (ln)"),
        _image(mel_spectrogram(y, cfg), out_dir / "mel_spectrogram.png", sr=sr, hop_length=hop, **mel,
               title=f"Mel spectrogram ({cfg.n_mels} bands)", unit="Power (dB re. utterance max)"),
    ]
    return outputs


def plot_curves(history: pd.DataFrame, path: str | Path) -> Path:
    """Loss and emotion accuracy per epoch, train vs validation.

    Parameters
    ----------
    history : DataFrame
        One row per epoch: ``epoch``, ``emotion_loss``, ``emotion_accuracy``, and where
        present ``val_emotion_loss``, ``val_emotion_accuracy`` and ``val_uar``.
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path
        `path`.
    """
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
    """A confusion matrix with each cell's value written in it.

    Parameters
    ----------
    matrix : array_like of int [shape=(k, k)]
        Counts, rows true and columns predicted classes.
    labels : sequence of str [shape=(k,)]
        Class names.
    path : str or Path
        PNG file to write.
    normalize : bool
        Show each row as shares of its total (colour scale 0-1) instead of counts.

    Returns
    -------
    Path
        `path`.
    """
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


def plot_call_timeline(segments: pd.DataFrame, path: str | Path, title: str = "", call: dict | None = None) -> Path:
    """One call's emotion timeline: a lane per role with segments coloured by the top
    emotion (opacity = confidence), and each role's valence over time underneath.

    Parameters
    ----------
    segments : DataFrame
        The call's rows of the job's `segments` table (read: ``role``, ``start_s``, ``end_s``,
        ``emotion``, ``confidence``, ``valence``).
    path : str or Path
        PNG file to write.
    title : str
        Figure title (default: "emotion timeline").
    call : dict, optional
        The call's row of the `calls` table: its date and satisfaction proxy go in the title.

    Returns
    -------
    Path
        `path`.
    """
    roles = [r for r in ("agent", "customer", "mixed") if r in set(segments["role"])] or sorted(set(segments["role"]))
    fig, (lanes, val) = plt.subplots(2, 1, figsize=(12, 1.2 + 1.1 * len(roles) + 2.2), sharex=True,
                                     gridspec_kw={"height_ratios": [len(roles), 2], "hspace": 0.55})
    for i, role in enumerate(roles):
        rows = segments[segments["role"] == role].sort_values("start_s")
        for _, r in rows.iterrows():
            lanes.barh(i, r["end_s"] - r["start_s"], left=r["start_s"], height=0.8,
                       color=EMOTION_COLORS.get(r["emotion"], "black"), alpha=0.35 + 0.65 * float(r["confidence"]))
        mid = (rows["start_s"] + rows["end_s"]) / 2
        val.plot(mid, rows["valence"], marker="o", ms=3, label=role)
    lanes.set_yticks(range(len(roles)), roles)
    lanes.invert_yaxis()
    details = []
    if call is not None:
        if call.get("date") is not None:
            details.append(f"date {call['date']}")
        sat = call.get("satisfaction_proxy")
        details.append("satisfaction proxy " + ("n/a (mono call)" if sat is None or pd.isna(sat) else f"{sat:.2f} (0-1)"))
    lanes.set_title((title or "emotion timeline") + (" — " + ", ".join(details) if details else ""))
    handles = [Patch(color=c, label=e) for e, c in EMOTION_COLORS.items()]
    lanes.legend(handles=handles, ncol=8, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.05), frameon=False,
                 title="colour: the segment's top emotion; shading: its confidence (faint = low, solid = high)",
                 title_fontsize=7)
    val.axhline(0, color="grey", lw=0.5)
    val.set(ylim=(-1, 1), ylabel="valence (-1 negative, +1 positive)", xlabel="Time in call (s)")
    val.legend(fontsize=8)
    return _save(fig, Path(path))
