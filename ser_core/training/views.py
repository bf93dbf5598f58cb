"""The degraded views a model trains on: background noise, the telephone line, an MP3
codec (and a reverberant room, for robustness tests); `View` chains them, seeded by each
file's name.

Training and the robustness experiments use these; the product's only degradation is the
telephone line of `ser evaluate --telephone` (`ser_core.audio.telephone_line`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from ..audio import load_preprocessed, name_seed, telephone_channel
from ..config import FeatureConfig


def room_reverb(
    y: np.ndarray, sr: int, *, seed: int = 0, rt60_s: tuple[float, float] = (0.2, 0.8),
    drr_db: tuple[float, float] = (0.0, 10.0),
) -> np.ndarray:
    """A speaker in a room: `y` convolved with a synthetic impulse response — the direct
    path, then exponentially decaying noise reaching -60 dB after RT60 — with RT60 and
    the direct-to-reverberant energy ratio drawn from the ranges; same length and RMS.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono waveform.
    sr : int
        Its sample rate in Hz.
    seed : int
        Seeds the draws.
    rt60_s : tuple of float
        (low, high) of the reverberation time RT60, in seconds.
    drr_db : tuple of float
        (low, high) of the direct-to-reverberant ratio, in dB.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        The reverberant waveform.
    """
    rng = np.random.default_rng(seed)
    rt60 = rng.uniform(*rt60_s)
    t = np.arange(1, int(rt60 * sr)) / sr
    tail = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    tail *= 10 ** (-rng.uniform(*drr_db) / 20) / np.linalg.norm(tail)
    wet = fftconvolve(y, np.concatenate([[1.0], tail]))[: y.size]
    rms_in, rms_out = _rms(y), _rms(wet)
    return (wet * (rms_in / rms_out if rms_out > 0 else 1.0)).astype(np.float32)


def _rms(v: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(v, dtype=np.float64))))


def mix_at_snr(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`y` plus `noise` scaled to `snr_db` below the signal's RMS.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        The signal.
    noise : np.ndarray [shape=(n,)]
        The noise, at any level.
    snr_db : float
        Signal-to-noise ratio of the mix in dB (RMS against RMS).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    return (y + noise * (_rms(y) / max(_rms(noise), 1e-12)) * 10 ** (-snr_db / 20)).astype(np.float32)


def background_noise(y: np.ndarray, sr: int, *, seed: int = 0, snr_db: tuple[float, float] = (0.0, 20.0)) -> np.ndarray:
    """`y` in stationary background noise: white or pink (1/f, drawn at random), at an SNR
    drawn from `snr_db` against the signal's RMS.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono waveform.
    sr : int
        Its sample rate in Hz.
    seed : int
        Seeds the noise, its colour and the SNR.
    snr_db : tuple of float
        (low, high) of the SNR, in dB.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(y.size))
    if rng.random() < 0.5:  # pink: power falling 3 dB an octave
        spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(y.size, 1 / sr), 20.0))
    return mix_at_snr(y, np.fft.irfft(spectrum, n=y.size), rng.uniform(*snr_db))


def lossy_codec(y: np.ndarray, sr: int, *, seed: int = 0, levels: tuple[float, float] = (0.3, 0.99)) -> np.ndarray:
    """`y` coded as MP3 (variable bit rate, at a compression level drawn from `levels`,
    libsndfile's scale: 0 best, 1 smallest; libsndfile 1.2 refuses levels above 0.9999)
    and decoded back, cut or padded to its length.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono waveform; clipped to [-1, 1] before coding.
    sr : int
        Its sample rate in Hz (a rate MP3 has, e.g. 16000 or 44100).
    seed : int
        Seeds the compression level.
    levels : tuple of float
        (low, high) of the compression level.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
    """
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0), sr, format="MP3", subtype="MPEG_LAYER_III",
             compression_level=float(rng.uniform(*levels)))
    buf.seek(0)
    z = sf.read(buf, dtype="float32", always_2d=True)[0][:, 0]
    return np.pad(z[: y.size], (0, max(0, y.size - z.size)))


@dataclass(frozen=True)
class View:
    """A degraded view of a recording, for training views and robustness tests. Its steps
    run in this order: a `room_reverb` room, `background_noise`, the `telephone_channel`,
    an MP3 `lossy_codec`. Each is seeded by the file's name, so a file's view is the same
    in every run. `View()` is the recording as it is.

    Attributes
    ----------
    room, noise, telephone, codec : bool
        Whether the view takes that step.
    """

    room: bool = False
    noise: bool = False
    telephone: bool = False
    codec: bool = False

    def apply(self, y: np.ndarray, sr: int, name: str) -> np.ndarray:
        """This view of `y`, a mono recording at `sr` named `name` (its seed).

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]
            Mono waveform.
        sr : int
            Its sample rate in Hz.
        name : str
            The file's name; seeds every step (`ser_core.audio.name_seed`).

        Returns
        -------
        np.ndarray [shape=(m,)]
            The degraded waveform at `sr`; m = n, except that the telephone step's
            resampling may add or drop a few samples.
        """
        seed = name_seed(name)
        if self.room:
            y = room_reverb(y, sr, seed=seed)
        if self.noise:
            y = background_noise(y, sr, seed=seed)
        if self.telephone:
            y = telephone_channel(y, sr, seed=seed)
        if self.codec:
            y = lossy_codec(y, sr, seed=seed)
        return y


def load_view(path: str | Path, cfg: FeatureConfig, view: View = View()) -> np.ndarray:
    """`ser_core.audio.load_preprocessed` of the file's `view`.

    Parameters
    ----------
    path : path
        A mono audio file.
    cfg : FeatureConfig
        The preprocessing.
    view : View
        Applied to the waveform as read, at its own rate, before preprocessing.

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        The preprocessed waveform at `cfg.sample_rate` Hz.

    Raises
    ------
    ser_core.audio.AudioError
        If the file cannot be used.
    """
    return load_preprocessed(path, cfg, view.apply)
