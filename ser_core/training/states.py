"""Encoder hidden states of corpus clips, computed once and cached on disk.

A head trains in minutes on two CPU cores only because the frozen encoder runs once per
clip and view: its states (layers, frames, width) are stored as float16 ``.npy`` files
under ``$SER_CACHE_DIR/states/<key>/``, where the key covers everything that changes them:
the encoder weights' sha256, the preprocessing config and the degraded view. A file's
entry is named by its path, size and modification time, so an edited file is re-encoded.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..audio import AudioError
from ..config import FeatureConfig, default_cache_dir
from .views import View, load_view

# bump when the encoder's numerics change (front end, layers): cached states are then stale
STATES_VERSION = 1


def prep_config() -> FeatureConfig:
    """How a waveform is prepared for the encoder: 16 kHz, the 30 dB trim, RMS
    normalisation to -20 dBFS per utterance, no pre-emphasis (Whisper hears raw speech).

    Returns
    -------
    FeatureConfig
        `FeatureConfig` defaults with ``normalize="rms"``, ``preemphasis=0.0``.
    """
    return FeatureConfig(normalize="rms", preemphasis=0.0)


def cache_key(encoder_sha256: str, prep: FeatureConfig, view: View, precision: str) -> str:
    """Short hash of what shapes a clip's states: code version, encoder weights and precision,
    preprocessing, view.

    Parameters
    ----------
    encoder_sha256 : str
        Hex sha256 of the encoder's weights.
    prep : FeatureConfig
        The preprocessing (its `extraction_json`).
    view : View
        The degraded view.
    precision : {"float32", "int8"}
        The encoder's precision (`ser_core.encoder.PRECISIONS`).

    Returns
    -------
    str
        16 hex digits.
    """
    blob = json.dumps({"version": STATES_VERSION, "encoder": encoder_sha256, "precision": precision,
                       "prep": json.loads(prep.extraction_json()), "view": repr(view)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_name(path: str | Path) -> str:
    """A clip's file name in the cache: sha1 of its resolved path, size and modification time.

    Parameters
    ----------
    path : path
        An existing audio file.

    Returns
    -------
    str
        ``<40 hex digits>.npy``.
    """
    st = Path(path).stat()
    return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest() + ".npy"


def cache_folder(encoder_sha256: str, prep: FeatureConfig, view: View, precision: str,
                 cache_dir: str | Path | None = None) -> Path:
    """The folder of one encoder, precision, preprocessing and view's states: ``<cache_dir>/states/<cache_key>``.

    Parameters
    ----------
    encoder_sha256, prep, view, precision
        As for `cache_key`.
    cache_dir : path, optional
        Default: `ser_core.config.default_cache_dir`.

    Returns
    -------
    Path
        The folder (not created here).
    """
    return Path(cache_dir or default_cache_dir()) / "states" / cache_key(encoder_sha256, prep, view, precision)


def corpus_states(
    paths: Sequence[str],
    encoder_name: str,
    prep: FeatureConfig,
    *,
    precision: str,
    view: View = View(),
    cache_dir: str | Path | None = None,
    log_every: int = 200,
) -> tuple[list[Path | None], dict[int, str]]:
    """Cached encoder states of each clip (computed where missing).

    Parameters
    ----------
    paths : sequence of str
        Audio files.
    encoder_name : str
        An encoder of `ser_core.encoder.available_encoders`.
    prep : FeatureConfig
        The preprocessing (`prep_config`).
    precision : {"float32", "int8"}
        The encoder's precision (`ser_core.encoder.load_encoder`).
    view : View
        The degraded view of each clip (seeded by its file name).
    cache_dir : path, optional
        Default: `ser_core.config.default_cache_dir`.
    log_every : int
        Print progress every this many newly encoded clips (0: never).

    Returns
    -------
    files : list of Path or None
        One ``.npy`` per clip, [shape=(layers, frames, width), dtype=float16] with frames at
        50 per second; None where the clip was unusable.
    errors : dict of int to str
        Position -> error text of the unusable clips (remembered in the folder's ``errors.json``).
    """
    from ..encoder import encode, encoder_spec, load_encoder

    folder = cache_folder(encoder_spec(encoder_name).npz_sha256, prep, view, precision, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    failed_file = folder / "errors.json"
    failed: dict[str, str] = json.loads(failed_file.read_text()) if failed_file.exists() else {}
    files: list[Path | None] = []
    errors: dict[int, str] = {}
    model = None
    t0, done = time.time(), 0
    # BLAS held to one thread: its idle pool would spin beside the encoder's threads (ser_core.threads)
    with threadpool_limits(limits=1, user_api="blas"):
        for i, p in enumerate(paths):
            target = folder / entry_name(p)
            if target.name in failed:
                files.append(None)
                errors[i] = failed[target.name]
                continue
            if not target.exists():
                try:
                    y = load_view(p, prep, view)
                except AudioError as exc:
                    failed[target.name] = errors[i] = f"{exc.code}: {exc}"
                    files.append(None)
                    continue
                if model is None:  # built only when some clip is not cached yet
                    model = load_encoder(encoder_name, precision=precision)
                tmp = target.with_suffix(".tmp.npy")
                np.save(tmp, encode(model, y).astype(np.float16))
                tmp.rename(target)
                done += 1
                if log_every and done % log_every == 0:
                    print(f"states {folder.name}: {done} encoded, {i + 1}/{len(paths)} ({time.time() - t0:.0f} s)", flush=True)
            files.append(target)
    failed_file.write_text(json.dumps(failed, indent=1, sort_keys=True))
    return files, errors


def load_states(files: Sequence[Path]) -> list[np.ndarray]:
    """Memory-mapped states (read on demand, shared through the page cache).

    Parameters
    ----------
    files : sequence of Path
        ``.npy`` files of `corpus_states`.

    Returns
    -------
    list of np.ndarray [shape=(layers, frames, width), dtype=float16]
        Read-only memory maps, one per file.
    """
    return [np.load(f, mmap_mode="r") for f in files]
