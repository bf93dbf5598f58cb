"""Call recordings: bounded-memory scanning, per-channel segmentation and per-call summaries.

A call is read twice: once block by block to run the voice-activity detector on every
channel (memory: one block), then once per speech segment (memory: one segment).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import soundfile as sf

from .audio import EmptyAudioError, UnreadableAudioError, resample, split_windows
from .config import SegmentConfig
from .labels import EMOTIONS
from .vad import frame_seconds, scan_probabilities, speech_regions_vad

MIXED = "mixed"


class CallInfo(NamedTuple):
    duration_s: float
    sample_rate: int
    channels: int


class Segment(NamedTuple):
    channel: int
    role: str
    index: int          # position within the call, ordered by (start, channel)
    start: int          # samples at the native rate
    end: int


def open_audio(fileobj: BinaryIO) -> sf.SoundFile:
    try:
        f = sf.SoundFile(fileobj)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as exc:
        raise UnreadableAudioError(f"cannot decode: {exc}") from exc
    if f.frames == 0:
        raise EmptyAudioError("the recording holds no samples")
    return f


def role_for(channel: int, channels: int, roles: Sequence[str]) -> str:
    if channels == 1:
        return MIXED
    return roles[channel] if channel < len(roles) else f"channel_{channel}"


def scan_speech(f: sf.SoundFile, block_s: float, backend: str = "silero") -> tuple[np.ndarray, float]:
    """Speech probabilities (channels, frames) over the whole file from the voice-activity
    detector (`ser_core.vad`), one block at a time (memory: one block). Returns the
    probabilities and the frame length in seconds."""
    f.seek(0)
    block = max(1, round(block_s * f.samplerate))
    blocks = f.blocks(blocksize=block, dtype="float32", always_2d=True)
    return scan_probabilities(blocks, f.samplerate, f.channels, backend), frame_seconds(backend)


def segment_call(f: sf.SoundFile, cfg: SegmentConfig, hop_s: float,
                 max_segment_s: float) -> tuple[list[Segment], dict[int, np.ndarray]]:
    """Speech segments of every channel, and each channel's speech regions (in seconds),
    from the voice-activity detector (`hop_s` is kept for callers; the detector sets its frames)."""
    probs, frame_s = scan_speech(f, cfg.block_s, cfg.vad_backend)
    segments: list[Segment] = []
    regions_s: dict[int, np.ndarray] = {}
    for ch in range(f.channels):
        regions = speech_regions_vad(probs[ch], frame_s, f.samplerate, f.frames, cfg.vad_threshold,
                                     min_speech_s=cfg.min_speech_s, min_silence_s=cfg.min_silence_s, pad_s=cfg.pad_s)
        regions_s[ch] = regions / f.samplerate
        role = role_for(ch, f.channels, cfg.roles)
        segments += [Segment(ch, role, 0, int(s), int(e))
                     for s, e in split_windows(regions, f.samplerate, max_segment_s, cfg.overlap_s)]
    segments.sort(key=lambda s: (s.start, s.channel))
    return [s._replace(index=i) for i, s in enumerate(segments)], regions_s


def read_segment(f: sf.SoundFile, seg: Segment, sr: int) -> np.ndarray:
    """One channel of one segment, resampled to `sr`."""
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
    u = _union(np.asarray(intervals, dtype=float).reshape(-1, 2))
    return float((u[:, 1] - u[:, 0]).sum())


def overlap_length(a: np.ndarray, b: np.ndarray) -> float:
    """Total time covered by both interval sets."""
    ua, ub = _union(np.asarray(a, float).reshape(-1, 2)), _union(np.asarray(b, float).reshape(-1, 2))
    total = 0.0
    for s, e in ua:
        total += float(np.clip(np.minimum(ub[:, 1], e) - np.maximum(ub[:, 0], s), 0, None).sum())
    return total


def _weighted_probs(rows: Sequence[dict[str, Any]]) -> np.ndarray | None:
    if not rows:
        return None
    w = np.array([r["end_s"] - r["start_s"] for r in rows])
    p = np.array([[r[f"p_{e}"] for e in EMOTIONS] for r in rows])
    return (w[:, None] * p).sum(axis=0) / max(w.sum(), 1e-9)


def _top_emotion(rows: Sequence[dict[str, Any]]) -> str | None:
    probs = _weighted_probs(rows)
    return None if probs is None else EMOTIONS[int(np.argmax(probs))]


def _weighted_valence(rows: Sequence[dict[str, Any]]) -> float | None:
    if not rows:
        return None
    w = np.array([r["end_s"] - r["start_s"] for r in rows])
    return float((w * np.array([r["valence"] for r in rows])).sum() / max(w.sum(), 1e-9))


def summarize_call(
    call_id: str, path: str, info: CallInfo, segments: Sequence[dict[str, Any]],
    regions_s: dict[int, np.ndarray], roles: Sequence[str], model_id: str, schema_version: str,
) -> dict[str, Any]:
    """One `calls` row from the call's segment rows and per-channel speech regions.

    Emotion shares are duration-weighted mean probabilities per role. The customer is the
    `customer` role, or `mixed` for mono recordings. Start/end: the customer's first and
    last third of segments. satisfaction_proxy = 0.5 + 0.25 * mean customer valence
    + 0.25 * customer valence at the end, in [0, 1] (valence in [-1, 1]).
    """
    by_role: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(segments, key=lambda r: r["start_s"]):
        by_role.setdefault(r["role"], []).append(r)
    role_regions: dict[str, list[np.ndarray]] = {}
    for ch, reg in regions_s.items():
        role_regions.setdefault(role_for(ch, info.channels, roles), []).append(reg)
    talk = {role: total_length(np.concatenate(regs)) for role, regs in role_regions.items()}
    all_regions = np.concatenate(list(regions_s.values())) if regions_s else np.zeros((0, 2))
    row: dict[str, Any] = {
        "call_id": call_id, "path": path, "duration_s": info.duration_s, "sample_rate": info.sample_rate,
        "channels": info.channels,
        "silence_s": max(0.0, info.duration_s - total_length(all_regions)),
        "overlap_s": overlap_length(regions_s.get(0, np.zeros((0, 2))), regions_s.get(1, np.zeros((0, 2))))
        if info.channels > 1 else 0.0,
        "n_segments": len(segments),
        "model_id": model_id, "schema_version": schema_version,
    }
    for role in ("agent", "customer", MIXED):
        row[f"{role}_talk_s"] = talk.get(role, 0.0)
        row[f"{role}_segments"] = len(by_role.get(role, []))
        probs = _weighted_probs(by_role.get(role, []))
        for j, e in enumerate(EMOTIONS):
            row[f"{role}_share_{e}"] = None if probs is None else float(probs[j])
    customer_role = "customer" if info.channels > 1 else MIXED
    cust = by_role.get(customer_role, [])
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
