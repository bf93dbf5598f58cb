"""Call recordings: bounded-memory scanning, per-channel segmentation and per-call summaries.

A call is read twice: once block by block to run the voice-activity detector on every
channel (memory: one block), then once per speech segment (memory: one segment).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import soundfile as sf

from .audio import SILENCE_FLOOR_DBFS, EmptyAudioError, EmptyFileError, UnreadableAudioError, resample, split_windows
from .config import SegmentConfig
from .labels import EMOTIONS
from .vad import frame_seconds, scan_probabilities, speech_regions_vad

MIXED = "mixed"


class CallInfo(NamedTuple):
    """What a call's `calls` row reports about its recording."""

    duration_s: float
    sample_rate: int
    channels: int
    samples_repaired: int = 0   # non-finite samples (NaN, inf) read as 0
    truncated: bool = False     # the file holds fewer frames than its header promises
    channels_ignored: int = 0   # channels beyond the roles, not scored


class Segment(NamedTuple):
    """One speech segment of one channel: samples [start, end) at the recording's rate."""

    channel: int
    role: str
    index: int          # position within the call, ordered by (start, channel)
    start: int          # samples at the native rate
    end: int


_DATA_LENGTH = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be\s*(\d+)\)", re.M)
_INSPECT_BLOCK = 4096  # small: a decoder that fails part-way loses what its last read held


class CallAudio:
    """A decoded recording as `segment_call` and `read_segment` read it: a `soundfile.SoundFile`
    whose reads never return non-finite samples (they read as 0: a few NaN/inf samples must
    not turn a call into "no speech") and never go past the frames that can actually be
    decoded (`frames`). `open_audio` builds it, after one pass over the file that finds
    `frames`, `samples_repaired`, `peak` and `truncated` (the header promises more frames
    than the file holds: libsndfile's header check, or a decoder that fails part-way).

    Parameters
    ----------
    f : soundfile.SoundFile
        The open recording.
    fileobj : file object, optional
        What `f` reads from, to reopen it when the decoder cannot seek back after an error.
    """

    def __init__(self, f: sf.SoundFile, fileobj: BinaryIO | None = None):
        self._f, self._fileobj = f, fileobj
        self.samplerate, self.channels = f.samplerate, f.channels
        self.declared_frames = f.frames
        header_longer = any(int(a) > int(b) for a, b in _DATA_LENGTH.findall(f.extra_info or ""))
        self.frames, self.samples_repaired, self.peak, decode_failed = self._inspect()
        self.truncated = decode_failed or header_longer or self.frames < self.declared_frames

    def _inspect(self) -> tuple[int, int, float, bool]:
        frames = repaired = 0
        peak, failed = 0.0, False
        self._f.seek(0)
        try:
            while True:
                b = self._f.read(_INSPECT_BLOCK, dtype="float32", always_2d=True)
                if not len(b):
                    break
                bad = ~np.isfinite(b)
                if bad.any():
                    repaired += int(bad.sum())
                    b = np.where(bad, np.float32(0), b)
                peak = max(peak, float(np.max(np.abs(b))))
                frames += len(b)
        except (sf.LibsndfileError, RuntimeError):  # a decoder that loses sync: a file cut short
            failed = True
        try:
            self._f.seek(0)
        except (sf.LibsndfileError, RuntimeError):  # the decoder cannot seek after its error: reopen
            if self._fileobj is None:
                raise
            self._f.close()
            self._fileobj.seek(0)
            self._f = sf.SoundFile(self._fileobj)
        return frames, repaired, peak, failed

    def seek(self, frames: int, whence: int = 0) -> int:
        """Move the read position, as `soundfile.SoundFile.seek`.

        Parameters
        ----------
        frames : int
            Offset in frames (samples per channel).
        whence : int
            0: from the start, 1: from the current position, 2: from the end.

        Returns
        -------
        int
            The new position in frames.
        """
        return self._f.seek(frames, whence)

    def tell(self) -> int:
        """The read position in frames.

        Returns
        -------
        int
        """
        return self._f.tell()

    def read(self, frames: int = -1, dtype: str = "float64", always_2d: bool = False, **kwargs) -> np.ndarray:
        """Read from the current position, as `soundfile.SoundFile.read`, but never past the
        decodable frames (the attribute `frames`) and with non-finite samples read as 0.

        Parameters
        ----------
        frames : int
            Frames to read; -1: all that are left.
        dtype : str
            Sample type, e.g. "float32".
        always_2d : bool
            Return (frames, channels) even for a mono file.
        **kwargs
            Passed on to `soundfile.SoundFile.read`.

        Returns
        -------
        np.ndarray [shape=(frames, channels), or (frames,) for mono without `always_2d`]
            Samples, full scale 1.0 for float types.
        """
        left = max(0, self.frames - self._f.tell())
        data = self._f.read(left if frames < 0 else min(frames, left), dtype=dtype, always_2d=always_2d, **kwargs)
        if data.dtype.kind == "f":
            bad = ~np.isfinite(data)
            if bad.any():
                data = np.where(bad, data.dtype.type(0), data)
        return data

    def blocks(self, blocksize: int, dtype: str = "float64", always_2d: bool = False, **_) -> Iterator[np.ndarray]:
        """Consecutive `read` blocks from the current position to the last decodable frame.

        Parameters
        ----------
        blocksize : int
            Frames per block (the last may be shorter).
        dtype : str
            Sample type.
        always_2d : bool
            As in `read`.
        **_
            Ignored (accepted for `soundfile.SoundFile.blocks` callers).

        Yields
        ------
        np.ndarray [shape=(blocksize, channels), or (blocksize,) for mono without `always_2d`]
        """
        while self._f.tell() < self.frames:
            yield self.read(blocksize, dtype=dtype, always_2d=always_2d)

    def close(self) -> None:
        """Close the underlying `soundfile.SoundFile`."""
        self._f.close()

    def __enter__(self) -> CallAudio:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:  # format, subtype, extra_info, ...
        return getattr(self._f, name)


def open_audio(fileobj: BinaryIO) -> CallAudio:
    """The recording in `fileobj`, or an `AudioError` whose message an operator can read.

    Parameters
    ----------
    fileobj : binary file object
        Seekable, positioned at the start.

    Returns
    -------
    CallAudio
        The decoded recording, inspected, positioned at its first frame.

    Raises
    ------
    EmptyFileError
        `fileobj` holds 0 bytes.
    UnreadableAudioError
        Not an audio file libsndfile decodes.
    EmptyAudioError
        A header but no samples.
    """
    if not fileobj.read(1):
        raise EmptyFileError()
    fileobj.seek(0)
    try:
        f = sf.SoundFile(fileobj)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
        reason = (getattr(exc, "error_string", "") or str(exc)).strip().rstrip(".")
        if "not recognised" in reason.lower() or "unknown format" in reason.lower():
            reason = "format not recognised"
        raise UnreadableAudioError(f"not a supported audio file ({reason})") from exc
    audio = CallAudio(f, fileobj)
    if audio.frames == 0:
        audio.close()
        raise EmptyAudioError("empty recording (a header but no samples)")
    return audio


def is_silent(f: CallAudio) -> bool:
    """Digital silence: no sample above `SILENCE_FLOOR_DBFS`.

    Parameters
    ----------
    f : CallAudio
        An inspected recording (`open_audio`).

    Returns
    -------
    bool
    """
    return f.peak <= 10 ** (SILENCE_FLOOR_DBFS / 20)


def role_for(channel: int, channels: int, roles: Sequence[str]) -> str | None:
    """`mixed` for a mono recording; otherwise the channel's role, or None for a channel
    beyond the roles (not scored, counted in `channels_ignored`).

    Parameters
    ----------
    channel : int
        Channel index.
    channels : int
        Channels in the recording.
    roles : sequence of str
        Roles by channel index (`SegmentConfig.roles`).

    Returns
    -------
    str or None
    """
    if channels == 1:
        return MIXED
    return roles[channel] if channel < len(roles) else None


def channels_ignored(channels: int, roles: Sequence[str]) -> int:
    """How many channels lie beyond the roles and are not scored (0 for a mono recording).

    Parameters
    ----------
    channels : int
        Channels in the recording.
    roles : sequence of str
        Roles by channel index.

    Returns
    -------
    int
    """
    return 0 if channels == 1 else max(0, channels - len(roles))


def scan_speech(f: sf.SoundFile, block_s: float, backend: str = "silero") -> tuple[np.ndarray, float]:
    """Speech probabilities (channels, frames) over the whole file from the voice-activity
    detector (`ser_core.vad`), one block at a time (memory: one block), from the first frame.

    Parameters
    ----------
    f : CallAudio or soundfile.SoundFile
        The recording.
    block_s : float
        Seconds of audio decoded at a time.
    backend : {"silero", "webrtc"}
        Detector.

    Returns
    -------
    probs : np.ndarray [shape=(channels, frames)], float32
        Speech probabilities in [0, 1].
    frame_s : float
        Frame length in seconds (`ser_core.vad.frame_seconds`).
    """
    f.seek(0)
    block = max(1, round(block_s * f.samplerate))
    blocks = f.blocks(blocksize=block, dtype="float32", always_2d=True)
    return scan_probabilities(blocks, f.samplerate, f.channels, backend), frame_seconds(backend)


def segment_call(f: sf.SoundFile, cfg: SegmentConfig, *,
                 max_segment_s: float) -> tuple[list[Segment], dict[int, np.ndarray]]:
    """Speech segments of every channel, and each channel's speech regions (in seconds),
    from the voice-activity detector.

    Parameters
    ----------
    f : CallAudio or soundfile.SoundFile
        The recording.
    cfg : SegmentConfig
        Detector, thresholds, block length and roles.
    max_segment_s : float
        Longest segment in seconds; longer turns are cut into equal pieces (`split_windows`).

    Returns
    -------
    segments : list of Segment
        Of the channels that have a role, sorted by (start, channel), `index` their position;
        samples at the recording's rate.
    regions_s : dict of int to np.ndarray [shape=(n, 2)], float64
        Per channel with a role, its speech regions as [start, end) in seconds.
    """
    probs, frame_s = scan_speech(f, cfg.block_s, cfg.vad_backend)
    segments: list[Segment] = []
    regions_s: dict[int, np.ndarray] = {}
    for ch in range(f.channels):
        regions = speech_regions_vad(probs[ch], frame_s, f.samplerate, f.frames, cfg.vad_threshold,
                                     min_speech_s=cfg.min_speech_s, min_silence_s=cfg.min_silence_s, pad_s=cfg.pad_s)
        role = role_for(ch, f.channels, cfg.roles)
        if role is None:  # a channel beyond the roles is not scored
            continue
        regions_s[ch] = regions / f.samplerate
        segments += [Segment(ch, role, 0, int(s), int(e)) for s, e in split_windows(regions, f.samplerate, max_segment_s)]
    segments.sort(key=lambda s: (s.start, s.channel))
    return [s._replace(index=i) for i, s in enumerate(segments)], regions_s


def read_segment(f: sf.SoundFile, seg: Segment, sr: int) -> np.ndarray:
    """One channel of one segment, resampled to `sr`.

    Parameters
    ----------
    f : CallAudio or soundfile.SoundFile
        The recording.
    seg : Segment
        The segment (samples at the recording's rate).
    sr : int
        Target sample rate in Hz.

    Returns
    -------
    np.ndarray [shape=(m,)], float32
        m ~ (seg.end - seg.start) * sr / f.samplerate.
    """
    f.seek(seg.start)
    data = f.read(seg.end - seg.start, dtype="float32", always_2d=True)[:, seg.channel]
    return resample(np.ascontiguousarray(data), f.samplerate, sr)


def _union(intervals: np.ndarray) -> np.ndarray:
    if len(intervals) == 0:
        return np.zeros((0, 2))
    iv = intervals[np.argsort(intervals[:, 0])]
    out = [list(iv[0])]
    for s, e in iv[1:]:
        if s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return np.asarray(out, dtype=float)


def total_length(intervals: np.ndarray) -> float:
    """Length of the union of intervals, so overlapping time counts once.

    Parameters
    ----------
    intervals : array_like [shape=(n, 2)]
        [start, end) intervals, any order.

    Returns
    -------
    float
        In the intervals' units (e.g. seconds).
    """
    u = _union(np.asarray(intervals, dtype=float).reshape(-1, 2))
    return float((u[:, 1] - u[:, 0]).sum())


def overlap_length(a: np.ndarray, b: np.ndarray) -> float:
    """Total time covered by both interval sets.

    Parameters
    ----------
    a, b : array_like [shape=(n, 2)]
        [start, end) intervals, each set's own overlaps counted once.

    Returns
    -------
    float
        Length of the intersection of their unions, in the intervals' units.
    """
    ua, ub = _union(np.asarray(a, float).reshape(-1, 2)), _union(np.asarray(b, float).reshape(-1, 2))
    total = 0.0
    for s, e in ua:
        total += float(np.clip(np.minimum(ub[:, 1], e) - np.maximum(ub[:, 0], s), 0, None).sum())
    return total


def _weights(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each row's share of the union of time of `rows` (sorted by start): its length less
    what earlier rows already cover, so overlapping windows never count a second twice."""
    w, covered = np.zeros(len(rows)), -np.inf
    for i, r in enumerate(rows):
        w[i] = max(0.0, r["end_s"] - max(r["start_s"], covered))
        covered = max(covered, r["end_s"])
    return w


def _weighted_probs(rows: Sequence[dict[str, Any]]) -> np.ndarray | None:
    if not rows:
        return None
    w = _weights(rows)
    p = np.array([[r[f"p_{e}"] for e in EMOTIONS] for r in rows])
    return (w[:, None] * p).sum(axis=0) / max(w.sum(), 1e-9)


def _top_emotion(rows: Sequence[dict[str, Any]]) -> str | None:
    probs = _weighted_probs(rows)
    return None if probs is None else EMOTIONS[int(np.argmax(probs))]


def _weighted_valence(rows: Sequence[dict[str, Any]]) -> float | None:
    if not rows:
        return None
    w = _weights(rows)
    return float((w * np.array([r["valence"] for r in rows])).sum() / max(w.sum(), 1e-9))


def summarize_call(
    call_id: str, path: str, info: CallInfo, segments: Sequence[dict[str, Any]],
    regions_s: dict[int, np.ndarray], *, roles: Sequence[str], model_id: str, schema_version: str,
) -> dict[str, Any]:
    """One `calls` row from the call's segment rows and per-channel speech regions.

    Every duration is a length of the union of time: talk time from the speech regions,
    emotion shares and valence as means weighted by each segment's share of its role's
    union of time (`_weights`), so overlapping windows never count speech twice.

    Role columns hold figures only for roles the recording has: a stereo call fills
    `agent_*` and `customer_*` (by `roles`) and leaves `mixed_*` null; a mono call mixes
    agent and customer, so its talk and emotion are in `mixed_*` only and every
    `agent_*`/`customer_*` column, `customer_role` and `satisfaction_proxy` are null.

    Emotion shares are duration-weighted mean probabilities per role. Start/end: the
    customer's first and last third of segments. satisfaction_proxy = 0.5 + 0.25 * mean
    customer valence + 0.25 * customer valence at the end, in [0, 1] (valence in [-1, 1]).

    Parameters
    ----------
    call_id, path : str
        The call's identifier and recording path, copied into the row.
    info : CallInfo
        The recording's duration, rate, channels and repairs.
    segments : sequence of dict
        The call's `segments` rows: each with ``role``, ``start_s``, ``end_s``, ``valence``
        and ``p_<emotion>`` for every class in `EMOTIONS`.
    regions_s : dict of int to np.ndarray [shape=(n, 2)]
        Speech regions per channel, in seconds (`segment_call`).
    roles : sequence of str
        Roles by channel index.
    model_id, schema_version : str
        Copied into the row.

    Returns
    -------
    dict of str to Any
        The `calls` row.
    """
    by_role: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(segments, key=lambda r: (r["start_s"], r["end_s"])):
        by_role.setdefault(r["role"], []).append(r)
    role_regions: dict[str, list[np.ndarray]] = {}
    for ch, reg in regions_s.items():
        role = role_for(ch, info.channels, roles)
        if role is not None:
            role_regions.setdefault(role, []).append(np.asarray(reg, float).reshape(-1, 2))
    present = {MIXED} if info.channels == 1 else {role_for(c, info.channels, roles) for c in range(info.channels)} - {None}
    talk = {role: total_length(np.concatenate(regs)) for role, regs in role_regions.items()}
    all_regions = np.concatenate([np.concatenate(v) for v in role_regions.values()]) if role_regions else np.zeros((0, 2))
    empty = np.zeros((0, 2))
    row: dict[str, Any] = {
        "call_id": call_id, "path": path, "duration_s": info.duration_s, "sample_rate": info.sample_rate,
        "channels": info.channels,
        "samples_repaired": info.samples_repaired, "truncated": info.truncated,
        "channels_ignored": info.channels_ignored,
        "silence_s": max(0.0, info.duration_s - total_length(all_regions)),
        "overlap_s": overlap_length(np.concatenate(role_regions.get("agent", [empty])),
                                    np.concatenate(role_regions.get("customer", [empty])))
        if info.channels > 1 else 0.0,
        "n_segments": len(segments),
        "model_id": model_id, "schema_version": schema_version,
    }
    for role in ("agent", "customer", MIXED):
        applies = role in present
        row[f"{role}_talk_s"] = talk.get(role, 0.0) if applies else None
        row[f"{role}_segments"] = len(by_role.get(role, [])) if applies else None
        probs = _weighted_probs(by_role.get(role, [])) if applies else None
        for j, e in enumerate(EMOTIONS):
            row[f"{role}_share_{e}"] = None if probs is None else float(probs[j])
    customer_role = "customer" if "customer" in present and info.channels > 1 else None
    cust = by_role.get(customer_role, []) if customer_role else []
    third = max(1, len(cust) // 3)
    start, end = cust[:third], cust[-third:]
    v_mean, v_start, v_end = _weighted_valence(cust), _weighted_valence(start), _weighted_valence(end)
    row.update({
        "customer_role": customer_role,
        "customer_dominant_emotion": _top_emotion(cust),
        "customer_start_emotion": _top_emotion(start),
        "customer_end_emotion": _top_emotion(end),
        "customer_valence_start": v_start,
        "customer_valence_end": v_end,
        "customer_valence_trend": None if v_end is None else v_end - v_start,
        "satisfaction_proxy": None if v_mean is None else 0.5 + 0.25 * v_mean + 0.25 * v_end,
    })
    return row
