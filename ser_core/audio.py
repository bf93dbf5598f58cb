"""Audio front end: decoding, resampling, silence handling and enhancement.

All functions are pure and work on float32 numpy arrays. Multi-channel audio is
shaped (channels, samples); mono audio is shaped (samples,).
"""
from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr

from .config import FeatureConfig

SILENCE_FLOOR_DBFS = -70.0  # peak below this is treated as no signal at all


class AudioError(ValueError):
    """Audio that cannot be used; `code` is a short machine-readable reason."""

    code = "bad_audio"


class UnreadableAudioError(AudioError):
    code = "unreadable"


class EmptyAudioError(AudioError):
    code = "empty"


class SilentAudioError(AudioError):
    code = "silent"


class TooShortError(AudioError):
    code = "too_short"


def load_audio(
    path: str | Path, sr: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode any format libsndfile reads; optionally down-mix and resample.

    Returns (y, sr) with y float32, (samples,) when mono else (channels, samples).
    """
    try:
        data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
        raise UnreadableAudioError(f"cannot decode {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise EmptyAudioError(f"{path} holds no samples")
    y = data.T  # (channels, samples)
    if mono:
        y = y.mean(axis=0)
    if sr is not None and sr != native_sr:
        y = resample(y, native_sr, sr)
        native_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(native_sr)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality resampling (soxr) along the last axis."""
    if orig_sr == target_sr:
        return y
    out = soxr.resample(np.asarray(y, dtype=np.float32).T, orig_sr, target_sr, quality="HQ")
    return np.asarray(out.T, dtype=np.float32)


def peak_dbfs(y: np.ndarray) -> float:
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def trim_silence(
    y: np.ndarray, top_db: float = 30.0, frame_length: int = 1024, hop_length: int = 256
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut leading and trailing audio quieter than `top_db` below the loudest frame.

    Returns the trimmed signal and its (start, end) sample interval in `y`.
    """
    if y.size == 0:
        raise EmptyAudioError("no samples to trim")
    if peak_dbfs(y) < SILENCE_FLOOR_DBFS:
        raise SilentAudioError(f"signal peak below {SILENCE_FLOOR_DBFS} dBFS")
    trimmed, (start, end) = librosa.effects.trim(
        y, top_db=top_db, frame_length=frame_length, hop_length=hop_length
    )
    return trimmed, (int(start), int(end))


def speech_intervals(
    y: np.ndarray,
    sr: int,
    top_db: float = 30.0,
    min_speech_s: float = 0.3,
    min_silence_s: float = 0.3,
    max_segment_s: float = 4.0,
    overlap_s: float = 0.5,
    ref_db: float | None = None,
    frame_length: int = 1024,
    hop_length: int = 256,
) -> np.ndarray:
    """Speech regions of a long mono signal as an (n, 2) array of sample intervals.

    Frames quieter than `top_db` below the reference are silence; `ref_db` is the
    reference level in dBFS (default: the 95th percentile frame level, so one loud
    click cannot silence a whole call). Gaps shorter than `min_silence_s` are
    bridged, regions shorter than `min_speech_s` dropped, and regions longer than
    `max_segment_s` cut into windows of that length overlapping by `overlap_s`.
    """
    if y.ndim != 1:
        raise ValueError("speech_intervals expects mono audio")
    if y.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    rms = librosa.feature.rms(y=y, frame_length=frame_length, hop_length=hop_length, center=True)[0]
    level = librosa.amplitude_to_db(rms, ref=1.0, amin=1e-10, top_db=None)
    ref = float(np.percentile(level, 95)) if ref_db is None else ref_db
    voiced = (level > ref - top_db) & (level > SILENCE_FLOOR_DBFS)
    # frame-level runs of voiced frames
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    runs = edges.reshape(-1, 2)
    bounds = np.clip(runs * hop_length, 0, y.size)
    merged: list[list[int]] = []
    for s, e in bounds:
        if merged and s - merged[-1][1] < min_silence_s * sr:
            merged[-1][1] = int(e)
        else:
            merged.append([int(s), int(e)])
    out: list[tuple[int, int]] = []
    win, step = int(max_segment_s * sr), int((max_segment_s - overlap_s) * sr)
    for s, e in merged:
        if e - s < min_speech_s * sr:
            continue
        if e - s <= win:
            out.append((s, e))
        else:  # full windows; the last one is moved back to end exactly at e
            starts = list(range(s, e - win, step)) + [e - win]
            out.extend((st, st + win) for st in starts)
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def normalize(y: np.ndarray, method: str = "peak", target_dbfs: float = -20.0) -> np.ndarray:
    """Peak normalisation to full scale, or RMS normalisation to `target_dbfs`."""
    if method == "none":
        return y
    if method == "peak":
        peak = float(np.max(np.abs(y)))
        return y / peak if peak > 0 else y
    if method == "rms":
        rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
        return y * (10 ** (target_dbfs / 20.0) / rms) if rms > 0 else y
    raise ValueError(f"unknown normalisation {method!r}")


def preemphasis(y: np.ndarray, coef: float = 0.97) -> np.ndarray:
    """First-order high-pass y[n] - coef * y[n-1] that lifts the formant region."""
    if coef == 0:
        return y
    return librosa.effects.preemphasis(y, coef=coef).astype(np.float32)


def preprocess(y: np.ndarray, sr: int, cfg: FeatureConfig) -> np.ndarray:
    """Mono waveform at any rate -> trimmed, enhanced waveform at `cfg.sample_rate`."""
    if y.ndim != 1:
        raise ValueError("preprocess expects mono audio; select or mix channels first")
    y = resample(y, sr, cfg.sample_rate)
    y, _ = trim_silence(y, top_db=cfg.trim_db, frame_length=cfg.n_fft, hop_length=cfg.hop_length)
    if y.size < cfg.min_duration_s * cfg.sample_rate:
        raise TooShortError(
            f"{y.size / cfg.sample_rate:.3f} s of sound after trimming, need {cfg.min_duration_s} s"
        )
    y = normalize(y, cfg.normalize)
    return preemphasis(y, cfg.preemphasis)


def load_preprocessed(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    """Load a file (down-mixed to mono) and run `preprocess` on it."""
    y, sr = load_audio(path, sr=None, mono=True)
    return preprocess(y, sr, cfg)
