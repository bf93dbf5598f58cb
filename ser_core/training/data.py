"""Where the corpora and the caches are, RAVDESS's manifest and the CNN protocols' speaker-independent splits."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

DATA_ENV = "SER_DATA_DIR"


def data_dir(explicit: str | Path | None = None) -> Path | None:
    """The one data-path setting: argument, else $SER_DATA_DIR, else ../shared/data if present.

    Parameters
    ----------
    explicit : path, optional
        A folder given on the command line (``--data``).

    Returns
    -------
    Path or None
        The data folder; None where none is set or found (``shared/data`` is looked for
        beside the working directory and beside the repository).
    """
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def ravdess_manifest(root: str | Path) -> pd.DataFrame:
    """Read RAVDESS's manifest.csv (in `root` or `root/ravdess`), with absolute paths.

    Parameters
    ----------
    root : path
        The ``ravdess/`` folder or the data folder holding it.

    Returns
    -------
    pd.DataFrame
        One row per clip, the manifest's columns (`download.MANIFEST_COLUMNS`), ``path``
        made absolute.
    """
    root = Path(root)
    if not (root / "manifest.csv").exists() and (root / "ravdess" / "manifest.csv").exists():
        root = root / "ravdess"
    df = pd.read_csv(root / "manifest.csv")
    df["path"] = [str((root / p).resolve()) for p in df["path"]]
    return df


class Split(NamedTuple):
    """One speaker-independent split.

    Attributes
    ----------
    name : str
        E.g. ``fold_3``, ``seed_split``, ``all``.
    train, val, test : np.ndarray [shape=(k,), dtype=int]
        Row positions into the manifest; `val` are the clips of training actors kept for
        early stopping. No actor of a test clip is in `train` or `val`.
    """

    name: str
    train: np.ndarray  # row positions into the manifest
    val: np.ndarray
    test: np.ndarray


def _val_actors(train_actors: list[int], sex: dict[int, str], n: int) -> list[int]:
    """`n` training actors for early stopping, alternating female/male, highest numbers first."""
    by_sex = {s: sorted((a for a in train_actors if sex[a] == s), reverse=True) for s in ("female", "male")}
    picked: list[int] = []
    while len(picked) < n and any(by_sex.values()):
        for s in ("female", "male"):
            if by_sex[s] and len(picked) < n:
                picked.append(by_sex[s].pop(0))
    return picked


def _split(name: str, df: pd.DataFrame, test: np.ndarray, n_val: int) -> Split:
    """Train/val/test positions; no actor of a test clip is in train or val."""
    actor = df["actor"].to_numpy()
    test_actors = set(actor[test])
    sex = dict(zip(df["actor"], df["sex"]))
    val_actors = _val_actors(sorted(set(actor) - test_actors), sex, n_val)
    free = ~np.isin(actor, list(test_actors))
    is_val = np.isin(actor, val_actors)
    pos = np.arange(len(df))
    return Split(name, pos[free & ~is_val], pos[is_val], np.sort(test))


def fold_splits(df: pd.DataFrame, n_val: int = 2) -> Iterator[Split]:
    """The manifest's speaker-independent folds: each fold's actors held out in turn.

    Parameters
    ----------
    df : pd.DataFrame
        The clips: ``actor``, ``sex``, ``fold``.
    n_val : int
        Training actors held out for early stopping (alternating female and male,
        highest numbers first).

    Yields
    ------
    Split
        ``fold_<k>`` for each fold k, in order.
    """
    for fold in sorted(df["fold"].unique()):
        yield _split(f"fold_{fold}", df, np.flatnonzero(df["fold"].to_numpy() == fold), n_val)


def seed_split(df: pd.DataFrame, n_val: int = 2) -> Split:
    """The original study's split: song then speech, actor folders and files sorted,
    first 80% train, last 20% test. Other clips of the test actors (their songs) are
    left out of training, so the split is strictly speaker-independent.

    Parameters
    ----------
    df : pd.DataFrame
        The clips: ``path``, ``actor``, ``sex``, ``vocal_channel``.
    n_val : int
        Training actors held out for early stopping.

    Returns
    -------
    Split
        Named ``seed_split``.
    """
    order = np.lexsort((df["path"].to_numpy(), df["actor"].to_numpy(), (df["vocal_channel"] != "song").to_numpy()))
    cut = int(round(0.8 * len(order)))
    return _split("seed_split", df, order[cut:], n_val)


def all_split(df: pd.DataFrame) -> Split:
    """Every clip for training, no validation or test (for the shipped model).

    Parameters
    ----------
    df : pd.DataFrame
        The clips.

    Returns
    -------
    Split
        Named ``all``; `val` and `test` empty.
    """
    empty = np.zeros(0, dtype=np.int64)
    return Split("all", np.arange(len(df)), empty, empty)
