"""The CNNs' input features of whole corpora, each clip in a training view, computed in
parallel and cached on disk (`extract_corpus`); the features themselves are the product's
(`ser_core.features`)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ..audio import AudioError
from ..config import FeatureConfig, default_cache_dir
from ..features import Features, extract
from .views import View, load_view


def extract_file(path: str | Path, cfg: FeatureConfig, view: View = View()) -> Features:
    """Both CNN inputs of one audio file, taken in `view`.

    Parameters
    ----------
    path : path
        A mono audio file.
    cfg : FeatureConfig
        Preprocessing and features.
    view : View
        The degraded view (seeded by the file's name); `View()`: the file as it is.

    Returns
    -------
    Features
        ``mfcc`` [shape=(mfcc_frames, n_mfcc)] and ``cube`` [shape=(n_mels, frames, 3)].

    Raises
    ------
    ser_core.audio.AudioError
        If the file cannot be used (unreadable, several channels, too short, ...).
    """
    return extract(load_view(path, cfg, view), cfg)


class CorpusFeatures(NamedTuple):
    """The CNN inputs of a corpus, clip for clip.

    Attributes
    ----------
    mfcc : np.ndarray [shape=(n, mfcc_frames, n_mfcc), dtype=float32]
        The baseline's input.
    cube : np.ndarray [shape=(n, n_mels, frames, 3), dtype=float32]
        The deep model's input (spectrogram, mel filterbank, mel spectrogram).
    errors : dict of int to str
        Position -> reason, for the files that could not be used (their features are zero).
    """

    mfcc: np.ndarray        # (n, mfcc_frames, n_mfcc)
    cube: np.ndarray        # (n, n_mels, frames, 3)
    errors: dict[int, str]  # index -> reason, for files that could not be used


def _extract_or_error(path: str, cfg: FeatureConfig, view: View) -> Features | str:
    """`extract_file`, or the reason the file cannot be used."""
    try:
        return extract_file(path, cfg, view)
    except AudioError as exc:
        return f"{exc.code}: {exc}"


def extract_corpus(
    paths: Sequence[str | Path],
    cfg: FeatureConfig,
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int = -1,
    progress: bool = True,
    view: View = View(),
) -> CorpusFeatures:
    """Features for many files, each taken in `view`, in parallel, cached on disk by
    config, view and file list. A file that cannot be used gets zero features and an
    entry in `errors`.

    Parameters
    ----------
    paths : sequence of path
        Audio files.
    cfg : FeatureConfig
        Preprocessing and features (its `extraction_json` is part of the cache key).
    cache_dir : path, optional
        Default: `ser_core.config.default_cache_dir`; the cache is
        ``features-<key>.npz`` there.
    n_jobs : int
        Parallel workers (joblib; -1: one per CPU core).
    progress : bool
        Show a progress bar.
    view : View
        The degraded view of every file.

    Returns
    -------
    CorpusFeatures
        ``mfcc`` [shape=(n, mfcc_frames, n_mfcc)], ``cube`` [shape=(n, n_mels, frames, 3)],
        float32, aligned with `paths`, and ``errors``.
    """
    paths = [str(p) for p in paths]
    key = hashlib.sha256(
        (cfg.extraction_json() + repr(view) + "\n".join(f"{p}:{os.path.getsize(p)}" for p in paths)).encode()
    ).hexdigest()[:20]
    cache = Path(cache_dir or default_cache_dir()) / f"features-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            errors = {int(i): str(r) for i, r in zip(z["error_index"], z["error_reason"])}
            return CorpusFeatures(z["mfcc"], z["cube"], errors)
    jobs = Parallel(n_jobs=n_jobs, batch_size=16, return_as="generator")(
        delayed(_extract_or_error)(p, cfg, view) for p in paths
    )
    mfccs = np.zeros((len(paths), *cfg.mfcc_shape), np.float32)
    cubes = np.zeros((len(paths), *cfg.cube_shape), np.float32)
    errors: dict[int, str] = {}
    for i, res in enumerate(tqdm(jobs, total=len(paths), desc="features", disable=not progress)):
        if isinstance(res, str):
            errors[i] = res
        else:
            mfccs[i], cubes[i] = res
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # runs sharing the cache each write their own, then swap
    np.savez(
        tmp, mfcc=mfccs, cube=cubes,
        error_index=np.array(sorted(errors), dtype=np.int64),
        error_reason=np.array([errors[i] for i in sorted(errors)], dtype=str),
    )
    tmp.replace(cache)
    return CorpusFeatures(mfccs, cubes, errors)
