"""The study's four representations, fixed to a length with edge padding.

- MFCC: 40 cepstral coefficients of the log-mel spectrum (the baseline's input).
- spectrogram: log power STFT, linear frequency axis averaged into `n_mels` equal bands
  (over 0–Nyquist, or with `spectrogram_fmax` over fmin–fmax at the STFT's resolution).
- mel filterbank: log mel filterbank energies with each band's mean over the utterance
  removed (cepstral-mean-style channel normalisation, as in Kaldi fbank + CMN).
- mel spectrogram: mel power spectrum in dB relative to the utterance maximum.

The last three, stacked, are the deep model's 3-channel cube (n_mels, frames, 3).
"""
from __future__ import annotations

from typing import NamedTuple

import librosa
import numpy as np

from .config import FeatureConfig

_EPS = 1e-10


class Features(NamedTuple):
    """Both model inputs of one utterance, float32, each fixed to its frame count."""

    mfcc: np.ndarray  # (mfcc_frames, n_mfcc) — time first, for the 1-D CNN
    cube: np.ndarray  # (n_mels, frames, 3)


def fix_frames(x: np.ndarray, frames: int, mode: str = "edge") -> np.ndarray:
    """Crop or pad the last (time) axis to `frames`, padding with `mode` (default: edge).

    Parameters
    ----------
    x : np.ndarray [shape=(..., t)]
        Features, time last.
    frames : int
        Frame count wanted.
    mode : str
        `numpy.pad` mode for the padding.

    Returns
    -------
    np.ndarray [shape=(..., frames)]
    """
    return librosa.util.fix_length(x, size=frames, axis=-1, mode=mode)


def _power_stft(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    stft = librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window="hann", center=True)
    return np.abs(stft) ** 2


def _mel_power(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    return librosa.feature.melspectrogram(
        S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
        fmin=cfg.fmin, fmax=cfg.fmax,
    )


def standardize(x: np.ndarray) -> np.ndarray:
    """One feature channel of one utterance to zero mean and unit variance.

    Parameters
    ----------
    x : np.ndarray [shape=(...)]
        One channel, e.g. (n_mels, frames); statistics over all its values.

    Returns
    -------
    np.ndarray [shape=x.shape]
        ``(x - mean) / (std + 1e-5)``.
    """
    return (x - x.mean()) / (x.std() + 1e-5)


def spectrogram(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log power spectrogram on `n_mels` equal-width linear bands (`cfg.spectrogram_bins`).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Preprocessed mono waveform at `cfg.sample_rate`.
    cfg : FeatureConfig
        STFT (`n_fft`, `hop_length`, Hann window, centred frames) and band settings.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n // hop_length)], float64
        Band power in dB re. the utterance's maximum, floored at -80 dB; not standardised.
    """
    return _spectrogram(_power_stft(y, cfg), cfg)


def _spectrogram(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    lo, hi = cfg.spectrogram_bins
    edges = np.linspace(lo, hi, cfg.n_mels + 1).astype(int)
    bands = np.add.reduceat(power[:hi], edges[:-1], axis=0) / np.diff(edges)[:, None]
    return librosa.power_to_db(bands, ref=np.max, amin=_EPS, top_db=80.0)


def mel_filterbank(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Log mel filterbank energies, per-band mean removed.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Preprocessed mono waveform at `cfg.sample_rate`.
    cfg : FeatureConfig
        STFT and mel settings (`n_mels` bands over `fmin`-`fmax`).

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n // hop_length)], float32
        Natural log of each band's power less the band's mean over the utterance.
    """
    return _mel_filterbank(_mel_power(_power_stft(y, cfg), cfg))


def _mel_filterbank(mel: np.ndarray) -> np.ndarray:
    logmel = np.log(mel + _EPS)
    return logmel - logmel.mean(axis=1, keepdims=True)


def mel_spectrogram(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel power spectrogram in dB re. the maximum, 80 dB floor.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Preprocessed mono waveform at `cfg.sample_rate`.
    cfg : FeatureConfig
        STFT and mel settings (`n_mels` bands over `fmin`-`fmax`).

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n // hop_length)], float32
        Mel power in dB re. the utterance's maximum, in [-80, 0].
    """
    return librosa.power_to_db(_mel_power(_power_stft(y, cfg), cfg), ref=np.max, amin=_EPS, top_db=80.0)


def mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """MFCCs: the DCT of the 128-band log-mel (dB) spectrum, unfixed length, not standardised.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Preprocessed mono waveform at `cfg.sample_rate`.
    cfg : FeatureConfig
        STFT settings, `n_mfcc`, and the mel range `fmin`-`fmax`.

    Returns
    -------
    np.ndarray [shape=(n_mfcc, 1 + n // hop_length)], float32
    """
    return _mfcc(_power_stft(y, cfg), cfg)


def _mfcc(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """MFCCs of a power STFT: the DCT of its 128-band log-mel spectrum (as `librosa.feature.mfcc`)."""
    mel = librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=128,
                                         fmin=cfg.fmin, fmax=cfg.fmax)
    return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.n_mfcc)


def _unfixed(y: np.ndarray, cfg: FeatureConfig, names: tuple[str, ...] = ("mfcc", "cube")) -> dict[str, np.ndarray]:
    """The model inputs `names` over the whole utterance (time last), standardised per
    utterance, from one STFT."""
    power = _power_stft(y, cfg)
    out = {}
    if "cube" in names:
        mel = _mel_power(power, cfg)
        channels = [
            _spectrogram(power, cfg),
            _mel_filterbank(mel),
            librosa.power_to_db(mel, ref=np.max, amin=_EPS, top_db=80.0),
        ]
        if cfg.standardize:
            channels = [standardize(c) for c in channels]
        out["cube"] = np.stack(channels, axis=-2)
    if "mfcc" in names:
        m = _mfcc(power, cfg)
        if cfg.standardize:
            m = (m - m.mean(axis=1, keepdims=True)) / (m.std(axis=1, keepdims=True) + 1e-5)
        out["mfcc"] = m
    return out


def _frames(name: str, cfg: FeatureConfig) -> int:
    """Frame count of the model input `name` ("cube" or "mfcc")."""
    return cfg.frames if name == "cube" else cfg.mfcc_frames


def _window(full: np.ndarray, name: str, start: int, cfg: FeatureConfig) -> np.ndarray:
    """The model input `name` from `start` in whole-utterance features: one window of the
    input's frame count (edge-padded past the end), in the model's layout."""
    frames = _frames(name, cfg)
    x = fix_frames(full[..., start : start + frames], frames, cfg.pad_mode)
    return (np.moveaxis(x, -2, -1) if name == "cube" else x.T).astype(np.float32)


def extract(y: np.ndarray, cfg: FeatureConfig) -> Features:
    """Both model inputs from a preprocessed waveform, each fixed to its frame count
    (the utterance's first frames; shorter ones padded with `cfg.pad_mode`).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Preprocessed mono waveform at `cfg.sample_rate`.
    cfg : FeatureConfig
        Feature settings; with `cfg.standardize`, each cube channel is standardised per
        utterance and each MFCC coefficient over its frames.

    Returns
    -------
    Features
        ``mfcc`` [shape=(mfcc_frames, n_mfcc)], float32, time first; ``cube``
        [shape=(n_mels, frames, 3)], float32: spectrogram, mel filterbank, mel spectrogram.
    """
    full = _unfixed(y, cfg)
    return Features(mfcc=_window(full["mfcc"], "mfcc", 0, cfg), cube=_window(full["cube"], "cube", 0, cfg))


def window_starts(n_frames: int, window: int, overlap: float = 0.5) -> list[int]:
    """First frames of the windows that cover `n_frames` frames, overlapping by the
    fraction `overlap`; the last window ends at the last frame (one window if it all fits).

    Parameters
    ----------
    n_frames : int
        Frames to cover.
    window : int
        Frames per window.
    overlap : float in [0, 1)
        Fraction of a window that consecutive windows share (the step is rounded, at least 1).

    Returns
    -------
    list of int
        Start frames, ascending, the first 0.
    """
    if n_frames <= window:
        return [0]
    step = max(1, int(round(window * (1 - overlap))))
    return [*range(0, n_frames - window, step), n_frames - window]


def extract_windows(y: np.ndarray, cfg: FeatureConfig, name: str, overlap: float = 0.5) -> np.ndarray:
    """One model input (`name`: "cube" or "mfcc") for every window of a whole utterance,
    batch axis first: the model's fixed-length input slid over the utterance instead of
    cropping it. Features are computed over the whole utterance, so an utterance that
    fits one window gives exactly `extract`'s input.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Preprocessed mono waveform at `cfg.sample_rate`.
    cfg : FeatureConfig
        Feature settings.
    name : {"cube", "mfcc"}
        Which model input.
    overlap : float
        Fraction of a window that consecutive windows share (`window_starts`).

    Returns
    -------
    np.ndarray, float32
        [shape=(n_windows, n_mels, frames, 3)] for "cube",
        [shape=(n_windows, mfcc_frames, n_mfcc)] for "mfcc".
    """
    full = _unfixed(y, cfg, (name,))[name]
    starts = window_starts(full.shape[-1], _frames(name, cfg), overlap)
    return np.stack([_window(full, name, s, cfg) for s in starts])
