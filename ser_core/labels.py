"""Class lists, the RAVDESS file-name convention and the valence/arousal mapping."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

EMOTIONS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)
INTENSITIES: tuple[str, ...] = ("normal", "strong")

# Fixed (valence, arousal) coordinates in [-1, 1] per class, placed on Russell's
# circumplex as in the affective-computing literature (e.g. Russell 1980; Scherer 2005).
# A prediction's valence/arousal is the probability-weighted mean of these points.
VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "calm": (0.4, -0.6),
    "happy": (0.8, 0.5),
    "sad": (-0.7, -0.5),
    "angry": (-0.6, 0.8),
    "fearful": (-0.7, 0.6),
    "disgust": (-0.7, 0.2),
    "surprised": (0.3, 0.8),
}
_VA = np.array([VALENCE_AROUSAL[e] for e in EMOTIONS], dtype=np.float32)


def valence_arousal(probs: np.ndarray) -> np.ndarray:
    """Map emotion probabilities to valence and arousal scores: the probability-weighted
    mean of the classes' `VALENCE_AROUSAL` points.

    Parameters
    ----------
    probs : np.ndarray [shape=(..., 8)]
        Class probabilities in `EMOTIONS` order.

    Returns
    -------
    np.ndarray [shape=(..., 2)], float32
        (valence, arousal), each in [-1, 1] for probabilities that sum to 1.

    Raises
    ------
    ValueError
        The last axis is not of length 8.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape[-1] != len(EMOTIONS):
        raise ValueError(f"expected {len(EMOTIONS)} class probabilities, got {probs.shape[-1]}")
    return probs @ _VA


class RavdessName(NamedTuple):
    """The fields of a RAVDESS file name."""

    vocal_channel: str
    emotion: str
    intensity: str
    statement: int
    repetition: int
    actor: int


def parse_ravdess_name(path: str | Path) -> RavdessName:
    """Parse `MM-VV-EE-II-SS-RR-AA.ext` (the RAVDESS naming convention).

    Parameters
    ----------
    path : str or Path
        A RAVDESS file (only its name is read).

    Returns
    -------
    RavdessName

    Raises
    ------
    ValueError
        Not seven numeric fields, or an emotion, intensity or vocal channel out of range.
    """
    parts = Path(path).stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a RAVDESS file name: {path}")
    _, vocal, emo, inten, stmt, rep, actor = (int(p) for p in parts)
    if not (1 <= emo <= 8 and inten in (1, 2) and vocal in (1, 2)):
        raise ValueError(f"RAVDESS field out of range in {path}")
    return RavdessName(
        vocal_channel="speech" if vocal == 1 else "song",
        emotion=EMOTIONS[emo - 1],
        intensity=INTENSITIES[inten - 1],
        statement=stmt,
        repetition=rep,
        actor=actor,
    )
