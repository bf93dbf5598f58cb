"""The training corpora in one table: RAVDESS and CREMA-D, with each corpus's classes.

Every row is one clip: `path` (absolute), `corpus`, `speaker` (unique across corpora, e.g.
``ravdess:07``), `sex`, `emotion`, `intensity` (``normal``/``strong``, or empty where the
corpus does not say), `fold` (the corpus's own speaker folds) and `sentence`.

A corpus that lacks a class (CREMA-D has no calm or surprised) must not teach a model that
the class never occurs: `class_mask` gives, per clip, the classes its corpus has, and the
loss is computed over those alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import EMOTIONS

CORPORA: dict[str, dict[str, str]] = {
    "ravdess": {
        "title": "RAVDESS (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391)",
        "licence": "CC BY-NC-SA 4.0 (non-commercial)",
        "commercial_use": "no",
    },
    "crema_d": {
        "title": "CREMA-D (Cao et al. 2014, IEEE Trans. Affective Computing 5(4))",
        "licence": "ODbL 1.0 / DbCL 1.0 (commercial use allowed with attribution)",
        "commercial_use": "yes",
    },
}
CLASSES: dict[str, tuple[str, ...]] = {
    "ravdess": EMOTIONS,
    "crema_d": ("neutral", "happy", "sad", "angry", "fearful", "disgust"),
}
COLUMNS = ["path", "corpus", "speaker", "sex", "emotion", "intensity", "fold", "sentence"]
# CREMA-D grades intensity on one sentence only; its low and high levels map to RAVDESS's two
_CREMA_INTENSITY = {"low": "normal", "high": "strong"}


def _corpus_root(root: Path, name: str) -> Path:
    return root if (root / "manifest.csv").exists() and root.name == name else root / name


def ravdess(root: str | Path, channels: str = "speech") -> pd.DataFrame:
    """RAVDESS clips in the common table.

    Parameters
    ----------
    root : path
        The data folder holding ``ravdess/``, or that folder itself.
    channels : str
        Vocal channel: ``speech``, ``song`` or ``both``.

    Returns
    -------
    pd.DataFrame
        One row per clip, columns `COLUMNS`; speakers ``ravdess:NN``.
    """
    base = _corpus_root(Path(root), "ravdess")
    df = pd.read_csv(base / "manifest.csv")
    if channels != "both":
        df = df[df["vocal_channel"] == channels]
    return pd.DataFrame({
        "path": [str((base / p).resolve()) for p in df["path"]],
        "corpus": "ravdess",
        "speaker": [f"ravdess:{a:02d}" for a in df["actor"]],
        "sex": df["sex"].to_numpy(),
        "emotion": df["emotion"].to_numpy(),
        "intensity": df["intensity"].to_numpy(),
        "fold": df["fold"].to_numpy(),
        "sentence": [f"ravdess:{s}" for s in df["statement"]],
    })


def crema_d(root: str | Path) -> pd.DataFrame:
    """CREMA-D clips in the common table (intensity only where the level is low or high).

    Parameters
    ----------
    root : path
        The data folder holding ``crema_d/``, or that folder itself.

    Returns
    -------
    pd.DataFrame
        One row per clip, columns `COLUMNS`; speakers ``crema_d:NNNN``; `intensity`
        ``normal`` (level low), ``strong`` (high) or empty.
    """
    base = _corpus_root(Path(root), "crema_d")
    df = pd.read_csv(base / "manifest.csv")
    return pd.DataFrame({
        "path": [str((base / p).resolve()) for p in df["path"]],
        "corpus": "crema_d",
        "speaker": [f"crema_d:{s}" for s in df["speaker"]],
        "sex": df["sex"].to_numpy(),
        "emotion": df["emotion"].to_numpy(),
        "intensity": [_CREMA_INTENSITY.get(v, "") for v in df["level"]],
        "fold": df["fold"].to_numpy(),
        "sentence": [f"crema_d:{s}" for s in df["sentence_code"]],
    })


def load_corpora(root: str | Path, names: Sequence[str], channels: str = "speech") -> pd.DataFrame:
    """The clips of the corpora `names` (e.g. ``("ravdess", "crema_d")``) under the data root.

    Parameters
    ----------
    root : path
        The data folder holding ``ravdess/`` and ``crema_d/`` (`ser_core.training.data.data_dir`).
    names : sequence of str
        Corpora to load, from `CORPORA`.
    channels : str
        RAVDESS vocal channel: ``speech``, ``song`` or ``both``.

    Returns
    -------
    pandas.DataFrame
        One row per clip, columns `COLUMNS`, index 0..n-1.

    Raises
    ------
    ValueError
        If a name is not in `CORPORA`.
    """
    unknown = sorted(set(names) - set(CORPORA))
    if unknown:
        raise ValueError(f"unknown corpora {unknown}; expected some of {sorted(CORPORA)}")
    parts = [ravdess(root, channels) if n == "ravdess" else crema_d(root) for n in names]
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def class_mask(corpus: Sequence[str]) -> np.ndarray:
    """Which classes each clip's corpus has.

    Parameters
    ----------
    corpus : sequence of str [shape=(n,)]
        Each clip's corpus, a key of `CLASSES`.

    Returns
    -------
    np.ndarray [shape=(n, 8), dtype=float32]
        1 where the clip's corpus has the class (columns: `EMOTIONS`), 0 where it does not.
    """
    table = {name: np.array([e in classes for e in EMOTIONS], np.float32) for name, classes in CLASSES.items()}
    return np.stack([table[c] for c in corpus]) if len(corpus) else np.zeros((0, len(EMOTIONS)), np.float32)


def credits(names: Sequence[str]) -> list[dict[str, str]]:
    """Title, licence and whether commercial use is allowed, per corpus (for bundle.json).

    Parameters
    ----------
    names : sequence of str
        Corpora, keys of `CORPORA`.

    Returns
    -------
    list of dict
        Per corpus: ``corpus``, ``title``, ``licence``, ``commercial_use`` (``yes``/``no``).
    """
    return [{"corpus": n, **CORPORA[n]} for n in names]
