"""Audio front end: decoding, resampling, silence handling and enhancement, and the simulated
telephone line of `ser evaluate --telephone`.

All functions are pure and work on float32 numpy arrays. Multi-channel audio is
shaped (channels, samples); mono audio is shaped (samples,).
"""
from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt, stft

from .config import FeatureConfig

SILENCE_FLOOR_DBFS = -70.0  # peak below this is treated as no signal at all
STEADY_FLOOR_DB = 3.0  # spread of a recording's quietest frames (5th to 20th percentile) that makes a noise floor
DC_OFFSET_SHARE = 3e-3  # of the peak (-50 dB): a larger DC offset is removed before levels are measured
IMPULSE_S, IMPULSE_SHARE = 0.01, 0.6  # a frame with this share of its energy within this many seconds is a click
NARROW_BAND_HZ, HIGH_BAND_HZ = (300.0, 3400.0), (4200.0, 7000.0)  # a phone line's band, and speech above any line's
WIDEBAND_FRAME, WIDEBAND_MIN_LEVEL_DB, WIDEBAND_MIN_RANGE_DB = 512, -50.0, 20.0  # `is_wideband`


class AudioError(ValueError):
    """Audio that cannot be used; `code` is a short machine-readable reason."""

    code = "bad_audio"


class UnreadableAudioError(AudioError):
    code = "unreadable"


class EmptyAudioError(AudioError):
    """A recording with a header but no samples."""

    code = "empty"


class EmptyFileError(EmptyAudioError):
    """A file of 0 bytes."""

    code = "empty_file"

    def __init__(self, message: str = "empty file (0 bytes)"):
        super().__init__(message)


class SilentAudioError(AudioError):
    code = "silent"


class MultiChannelError(AudioError):
    """A recording of several channels (speakers) where one speaker's utterance is expected."""

    code = "multichannel"


class TooShortError(AudioError):
    code = "too_short"


def load_audio(
    path: str | Path, sr: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
    """Decode any format libsndfile reads; optionally down-mix and resample.

    Parameters
    ----------
    path : str or Path
        Audio file.
    sr : int, optional
        Target sample rate in Hz (`resample`); None keeps the file's own rate.
    mono : bool
        Average the channels into one.

    Returns
    -------
    y : np.ndarray [shape=(n,) if mono else (channels, n)], float32
        The samples, full scale 1.0.
    sr : int
        Sample rate of `y` in Hz.

    Raises
    ------
    UnreadableAudioError
        The file cannot be decoded.
    EmptyAudioError
        The file holds no samples.
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
    """High-quality resampling (soxr, "HQ") along the last axis.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        Audio signal.
    orig_sr, target_sr : int
        Sample rates of `y` and of the result, in Hz.

    Returns
    -------
    np.ndarray [shape=(m,) or (channels, m)], float32
        `y` at `target_sr`, m ~ n * target_sr / orig_sr; `y` itself (not converted) when
        the rates are equal.
    """
    if orig_sr == target_sr:
        return y
    out = soxr.resample(np.asarray(y, dtype=np.float32).T, orig_sr, target_sr, quality="HQ")
    return np.asarray(out.T, dtype=np.float32)


def peak_dbfs(y: np.ndarray) -> float:
    """Peak absolute sample level in dBFS (full scale 1.0 = 0 dBFS).

    Parameters
    ----------
    y : np.ndarray [shape=(...)]
        Audio signal, any shape.

    Returns
    -------
    float
        20 log10 of the peak; -inf for an empty or all-zero signal.
    """
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else -np.inf


def rms_dbfs(y: np.ndarray) -> float:
    """RMS level in dBFS (full scale 1.0 = 0 dBFS).

    Parameters
    ----------
    y : np.ndarray [shape=(...)]
        Audio signal, any shape (all samples pooled).

    Returns
    -------
    float
        20 log10 of the RMS; -inf for an empty signal or digital silence.
    """
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else -np.inf


def dc_offset(y: np.ndarray, frame_length: int = 1024) -> float:
    """A recording's DC offset: the mean of its quietest fifth of frames (by variance),
    which neither a click nor the asymmetry of a loud voice biases.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal.
    frame_length : int
        Frame length in samples; with fewer than 5 whole frames the plain mean is used.

    Returns
    -------
    float
        The offset, in the units of `y` (0.0 for an empty signal).
    """
    n = y.size // frame_length
    if n < 5:
        return float(np.mean(y, dtype=np.float64)) if y.size else 0.0
    frames = y[: n * frame_length].reshape(n, frame_length)
    return float(frames[np.argsort(frames.var(axis=1))[: n // 5]].mean(dtype=np.float64))


def remove_offset(y: np.ndarray) -> np.ndarray:
    """`y` less its `dc_offset` when that exceeds `DC_OFFSET_SHARE` of the peak: a larger
    offset reads as a steady noise floor just under the speech, and a level-based trim or
    segmenter then cuts the speech itself. A smaller one lies far below any threshold they
    use, and `y` is returned as it is.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float
        Mono signal.

    Returns
    -------
    np.ndarray [shape=(n,)]
        `y` less its offset, in `y`'s dtype, or `y` itself.
    """
    offset = dc_offset(y)
    return (y - np.float32(offset)).astype(y.dtype) if abs(offset) > DC_OFFSET_SHARE * float(np.max(np.abs(y))) else y


def trim_silence(
    y: np.ndarray, *, top_db: float = 30.0, frame_length: int = 1024, hop_length: int = 256, noise_margin_db: float = 0.0,
    sr: int = 16000,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut leading and trailing audio quieter than `top_db` below the loudest frame and,
    with `noise_margin_db` > 0, not that far above the recording's steady noise floor, if
    it has one (`speech_threshold_db`), as `speech_regions` does for calls: on a noisy line
    the floor can sit within `top_db` of the speech, and the plain trim then keeps the
    noise around an utterance.

    A click is not the loudest frame: while the loudest frame is an impulse (`_impulse`),
    the frames around it are left out and the levels are read against the loudest of the
    rest; otherwise one handset knock would set the threshold and keep the silence between
    it and the speech.

    The levels are measured on the peak-normalised signal without its DC offset
    (`remove_offset`), so the interval does not depend on the recording level or offset
    (librosa's fixed -100 dB amplitude floor would otherwise read the digital silence around
    a quiet recording as sound, or as a noise floor). Without a click the interval is
    exactly `librosa.effects.trim`'s at the same threshold.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float
        Mono signal.
    top_db : float > 0
        Threshold in dB below the loudest frame (clicks left out).
    frame_length, hop_length : int
        RMS frame length and hop, in samples.
    noise_margin_db : float >= 0
        Margin in dB above a steady noise floor that a kept frame needs; 0: no floor test.
    sr : int
        Sample rate in Hz (sets the click window, `IMPULSE_S`).

    Returns
    -------
    y_trimmed : np.ndarray [shape=(end - start,)]
        ``y[start:end]`` (a view of `y`).
    interval : tuple of int
        (start, end) sample indices in `y`.

    Raises
    ------
    EmptyAudioError
        `y` is empty.
    SilentAudioError
        Its peak, DC offset removed, is below `SILENCE_FLOOR_DBFS`.
    """
    if y.size == 0:
        raise EmptyAudioError("no samples to trim")
    ac = remove_offset(y)
    if peak_dbfs(ac) < SILENCE_FLOOR_DBFS:
        raise SilentAudioError(f"signal peak (DC offset removed) below {SILENCE_FLOOR_DBFS} dBFS")
    rms = librosa.feature.rms(y=ac / np.max(np.abs(ac)), frame_length=frame_length, hop_length=hop_length)[0]
    levels = librosa.amplitude_to_db(rms, ref=np.max, top_db=None)  # what librosa's trim compares
    kept = np.ones(levels.size, bool)
    while True:
        click = _impulse(ac, int(np.argmax(np.where(kept, levels, -np.inf))), frame_length, hop_length, sr)
        if click is None:
            break
        rest = kept.copy()
        rest[click] = False
        if not rest.any():
            break
        kept = rest
    ref = float(levels[kept].max())
    threshold = speech_threshold_db(levels[kept], ref, top_db, noise_margin_db) if noise_margin_db > 0 else ref - top_db
    frames = np.flatnonzero(kept & (levels > threshold))
    start = int(librosa.frames_to_samples(frames[0], hop_length=hop_length))
    end = min(y.size, int(librosa.frames_to_samples(frames[-1] + 1, hop_length=hop_length)))
    return y[start:end], (start, end)


def _impulse(y: np.ndarray, frame: int, frame_length: int, hop_length: int, sr: int) -> slice | None:
    """The frames whose windows hold a click, if `frame`'s energy is one: at least
    `IMPULSE_SHARE` of it within `IMPULSE_S` (a vowel spreads its energy over the frame)."""
    lo = max(0, frame * hop_length - frame_length // 2)
    energy = np.square(y[lo : frame * hop_length + frame_length // 2], dtype=np.float64)
    width = max(1, int(IMPULSE_S * sr))
    if energy.size <= width or energy.sum() == 0:
        return None
    windowed = np.convolve(energy, np.ones(width), mode="valid")
    if windowed.max() < IMPULSE_SHARE * energy.sum():
        return None
    at = lo + int(np.argmax(windowed))  # the click spans samples [at, at + width)
    first = max(0, -(-(at - frame_length // 2) // hop_length))
    return slice(first, (at + width + frame_length // 2) // hop_length + 1)


def frame_levels_db(y: np.ndarray, hop_length: int) -> np.ndarray:
    """RMS level in dBFS of consecutive, non-overlapping frames of `hop_length` samples
    along the last axis (the last partial frame is zero-padded). Block-wise callers get
    identical results when their blocks are multiples of `hop_length`.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
        Audio signal; frames run along the last axis.
    hop_length : int
        Frame length (and hop) in samples.

    Returns
    -------
    np.ndarray [shape=(..., ceil(n / hop_length))], float32
        10 log10 of each frame's mean square (dBFS), floored at -120 dB.
    """
    n = y.shape[-1]
    frames = -(-n // hop_length)
    padded = np.zeros((*y.shape[:-1], frames * hop_length), dtype=np.float32)
    padded[..., :n] = y
    power = np.mean(np.square(padded.reshape(*y.shape[:-1], frames, hop_length), dtype=np.float64), axis=-1)
    return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def speech_threshold_db(levels_db: np.ndarray, ref_db: float, top_db: float, noise_margin_db: float) -> float:
    """Frame level above which a frame is sound: within `top_db` of `ref_db` and, when the
    recording has a noise floor, at least `noise_margin_db` above it.

    The floor is the 5th-percentile frame, and only counts as one when it lies more than
    `noise_margin_db` + 6 dB below `ref_db` and is steady: the 20th-percentile frame within
    `STEADY_FLOOR_DB` of it, as when a fifth of the recording is line noise or hum. The
    quietest frames of a recording cut tight around its speech are the speech's own weak
    consonants and pauses, whose levels spread widely; taking them for noise would trim
    the utterance again at every pass (a call segment, a clip some other tool already
    trimmed), eating its onset and ending.

    Parameters
    ----------
    levels_db : np.ndarray [shape=(frames,)]
        Frame levels in dB.
    ref_db : float
        Reference level in dB, on the scale of `levels_db` (e.g. the loudest frame's).
    top_db : float
        Threshold in dB below `ref_db`.
    noise_margin_db : float
        Margin in dB above a steady noise floor.

    Returns
    -------
    float
        The threshold in dB, on the scale of `levels_db`.
    """
    threshold = ref_db - top_db
    floor, steady = np.percentile(levels_db, [5, 20])
    if ref_db - floor > noise_margin_db + 6.0 and steady - floor <= STEADY_FLOOR_DB:
        threshold = max(threshold, float(floor) + noise_margin_db)
    return threshold


def speech_regions(
    levels_db: np.ndarray,
    hop_length: int,
    sr: int,
    *,
    top_db: float = 30.0,
    min_speech_s: float = 0.3,
    min_silence_s: float = 0.3,
    ref_db: float | None = None,
    noise_margin_db: float = 10.0,
) -> np.ndarray:
    """Speech regions from frame levels, as an (n, 2) array of sample intervals.

    A frame is speech when it is within `top_db` of the reference (`ref_db`, default:
    the 95th percentile frame level, so one loud click cannot silence a whole call) and,
    when the recording has a measurable noise floor (its 5th percentile frame level lies
    more than `noise_margin_db` + 6 dB below the reference), at least `noise_margin_db`
    above that floor, so line noise between turns is not speech. Level alone cannot tell
    a channel of pure stationary noise from unbroken speech: both count as speech. Gaps
    shorter than `min_silence_s` are bridged and regions shorter than `min_speech_s` dropped.
    A frame at or below `SILENCE_FLOOR_DBFS` is never speech.

    Parameters
    ----------
    levels_db : np.ndarray [shape=(frames,)]
        Frame levels in dBFS (`frame_levels_db`), frame i covering samples
        ``[i, i + 1) * hop_length``.
    hop_length : int
        Frame length in samples.
    sr : int
        Sample rate in Hz.
    top_db : float
        Threshold in dB below the reference.
    min_speech_s, min_silence_s : float
        Shortest region kept and shortest gap not bridged, in seconds.
    ref_db : float, optional
        Reference level in dBFS; default: the 95th-percentile frame level.
    noise_margin_db : float
        Margin in dB above a measured noise floor.

    Returns
    -------
    np.ndarray [shape=(n_regions, 2)], int64
        [start, end) sample intervals, sorted; the last may end up to a frame past the
        signal (its last frame is zero-padded).
    """
    if levels_db.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    ref = float(np.percentile(levels_db, 95)) if ref_db is None else ref_db
    voiced = levels_db > max(speech_threshold_db(levels_db, ref, top_db, noise_margin_db), SILENCE_FLOOR_DBFS)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    merged: list[list[int]] = []
    for s, e in edges.reshape(-1, 2) * hop_length:
        if merged and s - merged[-1][1] < min_silence_s * sr:
            merged[-1][1] = int(e)
        else:
            merged.append([int(s), int(e)])
    kept = [(s, e) for s, e in merged if e - s >= min_speech_s * sr]
    return np.asarray(kept, dtype=np.int64).reshape(-1, 2)


def split_windows(regions: np.ndarray, sr: int, max_segment_s: float = 4.0, overlap_s: float = 0.0) -> np.ndarray:
    """Cut each region longer than `max_segment_s` into ceil(length / max) equal pieces that
    tile it: contiguous, not overlapping, none longer than the maximum. A turn slightly
    longer than a window becomes two halves, not two nearly identical windows, so no speech
    is scored (or counted in a duration) twice.

    `overlap_s` > 0 keeps the former full-length windows overlapping by `overlap_s` (the
    last one ends at the region's end), for `speech_intervals`' callers; the nightly job
    never asks for it.

    Parameters
    ----------
    regions : np.ndarray [shape=(n, 2)], int
        [start, end) sample intervals.
    sr : int
        Sample rate in Hz.
    max_segment_s : float
        Longest window in seconds.
    overlap_s : float
        0: equal pieces that tile each region; > 0: full-length windows overlapping by this
        many seconds.

    Returns
    -------
    np.ndarray [shape=(m, 2)], int64
        [start, end) sample intervals, region by region.
    """
    win = int(max_segment_s * sr)
    out: list[tuple[int, int]] = []
    for s, e in regions:
        s, e = int(s), int(e)
        length = e - s
        if length <= win:
            out.append((s, e))
        elif overlap_s > 0:
            step = int((max_segment_s - overlap_s) * sr)
            out.extend((st, st + win) for st in list(range(s, e - win, step)) + [e - win])
        else:
            n = -(-length // win)
            edges = [s + k * length // n for k in range(n + 1)]
            out.extend(zip(edges[:-1], edges[1:]))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def speech_intervals(
    y: np.ndarray,
    sr: int,
    *,
    top_db: float = 30.0,
    min_speech_s: float = 0.3,
    min_silence_s: float = 0.3,
    max_segment_s: float = 4.0,
    overlap_s: float = 0.5,
    ref_db: float | None = None,
    hop_length: int = 256,
    noise_margin_db: float = 10.0,
) -> np.ndarray:
    """Model-sized speech segments of a long mono signal: `frame_levels_db`, `speech_regions`
    (clipped to the signal), then `split_windows`.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal.
    sr : int
        Sample rate in Hz.
    top_db, min_speech_s, min_silence_s : float
        As in `speech_regions` (dB; seconds).
    max_segment_s, overlap_s : float
        As in `split_windows`, in seconds (note the overlapping default here).
    ref_db : float, optional
        As in `speech_regions` (dBFS).
    hop_length : int
        Level frame length in samples.
    noise_margin_db : float
        As in `speech_regions` (dB).

    Returns
    -------
    np.ndarray [shape=(m, 2)], int64
        [start, end) sample intervals in `y`.

    Raises
    ------
    ValueError
        `y` is not 1-D.
    """
    if y.ndim != 1:
        raise ValueError("speech_intervals expects mono audio")
    levels = frame_levels_db(y, hop_length)
    regions = speech_regions(levels, hop_length, sr, top_db=top_db, min_speech_s=min_speech_s,
                             min_silence_s=min_silence_s, ref_db=ref_db, noise_margin_db=noise_margin_db)
    regions = np.minimum(regions, y.size)
    return split_windows(regions, sr, max_segment_s, overlap_s)


def high_band_stats(y: np.ndarray, sr: int) -> tuple[float, float]:
    """(level, range) of the band above a phone line (4.2-7 kHz): its power relative to the
    line's band (0.3-3.4 kHz), and how far its loud frames (95th percentile) stand above its
    quiet ones (10th), both in dB; (-inf, 0) when `sr` cannot hold it or `y` is under a frame.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal.
    sr : int
        Sample rate in Hz.

    Returns
    -------
    level : float
        High-band power relative to the line band, in dB (or -inf).
    range : float
        95th less 10th percentile of the high band's frame levels, in dB.
    """
    if sr < 2 * HIGH_BAND_HZ[1] or y.size < WIDEBAND_FRAME:
        return float("-inf"), 0.0
    f, _, z = stft(y, sr, nperseg=WIDEBAND_FRAME, noverlap=WIDEBAND_FRAME // 2, boundary=None, padded=False)
    power = np.abs(z) ** 2
    high = power[(f >= HIGH_BAND_HZ[0]) & (f <= HIGH_BAND_HZ[1])].sum(axis=0)
    line = power[(f >= NARROW_BAND_HZ[0]) & (f <= NARROW_BAND_HZ[1])].sum(axis=0)
    if high.sum() <= 0 or line.sum() <= 0:
        return float("-inf"), 0.0
    frames_db = 10 * np.log10(np.maximum(high, 1e-30))
    return float(10 * np.log10(high.sum() / line.sum())), float(np.percentile(frames_db, 95) - np.percentile(frames_db, 10))


def is_wideband(y: np.ndarray, sr: int) -> bool:
    """Whether a (preprocessed) waveform carries clean speech above a phone line's band: the
    high band holds more than a resampler's leakage (level >= -50 dB; audio that went
    through an 8 kHz channel reads below -77 dB) and its speech stands at least 20 dB above
    its own floor (range), unlike a noise floor: 16-bit quantisation of a quiet narrowband
    file reads up to -25 dB but a range of 1-20 dB, white noise at 20 dB SNR a range of 2-31
    dB. Clean RAVDESS speech, trimmed and pre-emphasised, reads -19 dB or more and a range
    of 16 dB or more (docs/RESULTS.md, "A full-band companion for wideband audio").

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono, preprocessed signal (`preprocess`).
    sr : int
        Sample rate in Hz.

    Returns
    -------
    bool
        True when `high_band_stats` reads level >= `WIDEBAND_MIN_LEVEL_DB` and range >=
        `WIDEBAND_MIN_RANGE_DB`.
    """
    level, spread = high_band_stats(y, sr)
    return level >= WIDEBAND_MIN_LEVEL_DB and spread >= WIDEBAND_MIN_RANGE_DB


def normalize(y: np.ndarray, method: str = "peak", target_dbfs: float = -20.0) -> np.ndarray:
    """Peak normalisation to full scale, or RMS normalisation to `target_dbfs`.

    Parameters
    ----------
    y : np.ndarray [shape=(...)]
        Audio signal.
    method : {"peak", "rms", "none"}
        Scale the peak to 1.0 (0 dBFS), the RMS to `target_dbfs`, or leave `y` as it is.
    target_dbfs : float
        RMS target in dBFS, for "rms".

    Returns
    -------
    np.ndarray [shape=y.shape]
        The scaled signal; `y` itself for "none" or an all-zero signal.

    Raises
    ------
    ValueError
        Unknown `method`.
    """
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
    """First-order high-pass y[n] - coef * y[n-1] that lifts the formant region.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
        Audio signal, filtered along the last axis.
    coef : float in [0, 1)
        Filter coefficient; 0 returns `y` as it is.

    Returns
    -------
    np.ndarray [shape=y.shape], float32
        The filtered signal (or `y` itself).
    """
    if coef == 0:
        return y
    return librosa.effects.preemphasis(y, coef=coef).astype(np.float32)


def preprocess(y: np.ndarray, sr: int, cfg: FeatureConfig) -> np.ndarray:
    """Mono waveform at any rate -> trimmed, enhanced waveform at `cfg.sample_rate`:
    `resample`, `trim_silence`, `normalize` and `preemphasis` as `cfg` sets them.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float32
        Mono signal.
    sr : int
        Its sample rate in Hz.
    cfg : FeatureConfig
        Rate, trim (`trim_db`, `trim_noise_margin_db`; frames of `n_fft` / `hop_length`),
        level and pre-emphasis settings.

    Returns
    -------
    np.ndarray [shape=(m,)], float32 (for float32 `y`)
        The trimmed utterance at `cfg.sample_rate`, at least `cfg.min_duration_s` long.

    Raises
    ------
    ValueError
        `y` is not 1-D.
    EmptyAudioError, SilentAudioError
        From `trim_silence`.
    TooShortError
        Less than `cfg.min_duration_s` of sound after trimming.
    """
    if y.ndim != 1:
        raise ValueError("preprocess expects mono audio; select or mix channels first")
    y = resample(y, sr, cfg.sample_rate)
    y, _ = trim_silence(y, top_db=cfg.trim_db, frame_length=cfg.n_fft, hop_length=cfg.hop_length,
                        noise_margin_db=cfg.trim_noise_margin_db, sr=cfg.sample_rate)
    if y.size < cfg.min_duration_s * cfg.sample_rate:
        raise TooShortError(
            f"{y.size / cfg.sample_rate:.3f} s of sound after trimming, need {cfg.min_duration_s} s"
        )
    y = normalize(y, cfg.normalize)
    return preemphasis(y, cfg.preemphasis)


TELEPHONE_SR = 8000


def telephone_channel(y: np.ndarray, sr: int, snr_db: float = 20.0, seed: int = 0) -> np.ndarray:
    """A call-center line: 300-3400 Hz band-pass, 8 kHz, white noise at `snr_db` below the
    signal's RMS, G.711 mu-law coding (libsndfile); returned at the input rate `sr`.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float
        Mono signal.
    sr : int
        Its sample rate in Hz.
    snr_db : float
        Noise level in dB below the band-passed 8 kHz signal's RMS.
    seed : int
        Seed of the noise.

    Returns
    -------
    np.ndarray [shape=(m,)], float32
        The coded signal at `sr`, m ~ n (the round trip through 8 kHz may round the length).
    """
    sos = butter(6, [300, 3400], btype="bandpass", fs=sr, output="sos")
    narrow = resample(sosfilt(sos, y).astype(np.float32), sr, TELEPHONE_SR)
    rms = np.sqrt(np.mean(np.square(narrow, dtype=np.float64)))
    noise = np.random.default_rng(seed).standard_normal(narrow.size) * rms * 10 ** (-snr_db / 20)
    buf = io.BytesIO()
    sf.write(buf, np.clip(narrow + noise, -1, 1), TELEPHONE_SR, format="WAV", subtype="ULAW")
    buf.seek(0)
    coded, _ = sf.read(buf, dtype="float32")
    return resample(coded, TELEPHONE_SR, sr)


def name_seed(name: str) -> int:
    """The seed of a file's simulated degradations, from its name: a file is degraded the
    same way in every run.

    Parameters
    ----------
    name : str
        File name.

    Returns
    -------
    int
        CRC-32 of the UTF-8 name, in [0, 2**32).
    """
    return zlib.crc32(name.encode())


def telephone_line(y: np.ndarray, sr: int, name: str) -> np.ndarray:
    """`y`, a mono recording at `sr` named `name`, through the `telephone_channel` seeded by
    its name (`name_seed`): what `ser evaluate --telephone` scores.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], float
        Mono signal.
    sr : int
        Its sample rate in Hz.
    name : str
        File name (seeds the noise).

    Returns
    -------
    np.ndarray [shape=(m,)], float32
        As `telephone_channel`: the coded signal at `sr`, m ~ n.
    """
    return telephone_channel(y, sr, seed=name_seed(name))


Degradation = Callable[[np.ndarray, int, str], np.ndarray]  # (mono y, sr, file name) -> y at sr


def load_preprocessed(path: str | Path, cfg: FeatureConfig, degrade: Degradation | None = None) -> np.ndarray:
    """Load a mono file, pass it through `degrade` if given (e.g. `telephone_line`; the
    training views' `View.apply`), then `preprocess` it. A file of several channels is
    refused (`MultiChannelError`): mixing an agent and a customer would give one label to
    two speakers; the nightly job scores each channel of a call.

    Parameters
    ----------
    path : str or Path
        Audio file.
    cfg : FeatureConfig
        Preprocessing settings (`preprocess`).
    degrade : callable, optional
        ``degrade(y, sr, name) -> y``: `y` [shape=(n,)] at the file's own rate `sr` in Hz,
        `name` the file name; returns the degraded signal at `sr`.

    Returns
    -------
    np.ndarray [shape=(m,)], float32
        The preprocessed utterance at `cfg.sample_rate`.

    Raises
    ------
    MultiChannelError
        The file has more than one channel.
    AudioError
        From `load_audio` and `preprocess` (unreadable, empty, silent, too short).
    """
    y, sr = load_audio(path, sr=None, mono=False)
    if y.ndim == 2 and y.shape[0] > 1:
        raise MultiChannelError(f"{y.shape[0]}-channel recording: ser predict/evaluate score one speaker per file; "
                                "score calls with the nightly job (python -m pipelines.score_calls), which scores "
                                "each channel")
    y = y.reshape(-1)
    return preprocess(y if degrade is None else degrade(y, sr, Path(path).name), sr, cfg)
