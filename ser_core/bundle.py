"""Model bundles: the Keras model plus everything needed to serve it identically.

A bundle is a directory with `model.keras` and `bundle.json` (feature, model and
training configs, label lists, the training command, cross-validation metrics and the
sha256 of `model.keras`). Loading verifies the hash and uses Keras safe mode.

A bundle may carry a wideband companion in `wideband/`, itself a bundle: a network on the
full band, whose probabilities are averaged with the bundle's own wherever the audio
holds speech above a phone line's band (`ser_core.audio.is_wideband`). Narrowband audio is
scored by the bundle's own network alone.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from . import models  # noqa: F401  (registers custom layers for deserialisation)
from .audio import HIGH_BAND_HZ, AudioError, is_wideband, load_preprocessed, telephone_line
from .config import FeatureConfig, ModelConfig, TrainConfig, differing_configs
from .encoder import sha256_file
from .encoder_bundle import EncoderBundle, EncoderInputs, is_encoder_bundle, load_encoder_bundle, read_encoder_inputs
from .features import extract_windows
from .labels import EMOTIONS, INTENSITIES, valence_arousal
from .models import input_name

MODEL_FILE = "model.keras"
META_FILE = "bundle.json"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_model"  # the encoder model (`--model default`)
CNN_BUNDLE = Path(__file__).resolve().parent / "cnn_model"  # the study's CNN pair (`--model cnn`)
WIDEBAND_DIR = "wideband"
# what a companion must share with its bundle: one preprocessed waveform, the same windows
SHARED_FIELDS = ("sample_rate", "trim_db", "trim_noise_margin_db", "min_duration_s", "normalize", "preemphasis",
                 "hop_length", "frames", "mfcc_frames")


class BundleError(RuntimeError):
    """A folder that is not a usable bundle, or a companion or run that does not fit it."""


# one model input per network of a bundle, None where that network takes no part
Routed = tuple[np.ndarray | None, ...]


@dataclass(frozen=True)
class BundleInputs:
    """How a bundle's networks read a preprocessed waveform, without loading Keras: each
    network's feature config and input name. The first network reads every waveform; a
    second (the wideband companion) only wideband ones (`is_wideband`)."""

    networks: tuple[tuple[FeatureConfig, str], ...]

    @property
    def feature_config(self) -> FeatureConfig:
        """The first network's: preprocessing and windows, which every network shares."""
        return self.networks[0][0]

    def routes(self, y: np.ndarray) -> tuple[bool, ...]:
        """Which networks take part for a waveform.

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]
            Preprocessed mono waveform at `feature_config.sample_rate`.

        Returns
        -------
        tuple of bool
            One per network: True for the first, `is_wideband(y)` for a companion.
        """
        wide = len(self.networks) > 1 and is_wideband(y, self.feature_config.sample_rate)
        return (True,) + (wide,) * (len(self.networks) - 1)

    def windows(self, y: np.ndarray) -> Routed:
        """Each taking-part network's inputs for every window of a whole utterance (`extract_windows`).

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]
            Preprocessed mono waveform at `feature_config.sample_rate`.

        Returns
        -------
        tuple of np.ndarray or None
            Per network, [shape=(n_windows, *input_shape)] float32, or None where it takes no part.
        """
        return tuple(extract_windows(y, cfg, name) if used else None
                     for (cfg, name), used in zip(self.networks, self.routes(y)))

    @property
    def window_s(self) -> float:
        """The longest segment the job scores at once: the networks' input length."""
        return self.feature_config.window_s

    def segment(self, y: np.ndarray) -> Routed:
        """Each taking-part network's input for a waveform's first window (all of a call
        segment, which fits one window).

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]
            Preprocessed mono waveform at `feature_config.sample_rate`.

        Returns
        -------
        tuple of np.ndarray or None
            Per network, [shape=input_shape] float32 (e.g. (n_mels, frames, 3)), or None.
        """
        return tuple(w[0] if w is not None else None for w in self.windows(y))


def combined_id(*sha256s: str) -> str:
    """Short, stable identifier of one or more networks' weights (sha256 prefix).

    Parameters
    ----------
    *sha256s : str
        Hex sha256 of each network's `model.keras`, the bundle's own first.

    Returns
    -------
    str
        12 hex digits: the one digest's prefix, or the prefix of the sha256 of them all.
    """
    return sha256s[0][:12] if len(sha256s) == 1 else hashlib.sha256("".join(sha256s).encode()).hexdigest()[:12]


@dataclass
class Bundle:
    """A loaded CNN bundle (`load_bundle`): its network, configs, labels and optional companion."""

    model: keras.Model
    feature_config: FeatureConfig
    model_config: ModelConfig
    path: Path
    sha256: str
    labels: tuple[str, ...] = EMOTIONS
    intensities: tuple[str, ...] = INTENSITIES
    info: dict[str, Any] = field(default_factory=dict)
    wideband: Bundle | None = None          # full-band companion, averaged in on wideband audio

    @property
    def networks(self) -> tuple[Bundle, ...]:
        """The bundle itself, then its wideband companion if it has one."""
        return (self,) if self.wideband is None else (self, self.wideband)

    @property
    def model_id(self) -> str:
        """Short, stable identifier of the weights (sha256 prefix; of both networks' with a companion)."""
        return combined_id(*(n.sha256 for n in self.networks))

    @property
    def inputs(self) -> BundleInputs:
        """How the networks read a waveform (`BundleInputs`)."""
        return BundleInputs(tuple((n.feature_config, input_name(n.model_config)) for n in self.networks))

    def predict_routed(self, items: Sequence[Routed]) -> tuple[np.ndarray, np.ndarray]:
        """Emotion and intensity probabilities of routed inputs (`BundleInputs`), averaged
        over the networks that take part in each.

        Parameters
        ----------
        items : sequence of Routed
            Per item one entry per network (`networks`): that network's input for one
            window, or None where it takes no part (the first network always takes part).

        Returns
        -------
        emotion : np.ndarray [shape=(n_items, len(labels))], float32
        intensity : np.ndarray [shape=(n_items, len(intensities))], float32
        """
        emo = np.zeros((len(items), len(self.labels)), np.float32)
        inten = np.zeros((len(items), len(self.intensities)), np.float32)
        voters = np.zeros(len(items), np.float32)
        for k, net in enumerate(self.networks):
            rows = [i for i, item in enumerate(items) if item[k] is not None]
            if rows:
                e, t = net.predict_inputs(np.stack([items[i][k] for i in rows]))
                emo[rows] += e
                inten[rows] += t
                voters[rows] += 1
        return emo / voters[:, None], inten / voters[:, None]

    def predict_inputs(self, x: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Emotion (n, 8) and intensity (n, 2) probabilities for model inputs.

        Parameters
        ----------
        x : np.ndarray [shape=(n, *input_shape)], float32
            Inputs of this network: (n, n_mels, frames, 3) cubes or (n, mfcc_frames, n_mfcc) MFCCs.
        batch_size : int
            Inputs per forward pass.

        Returns
        -------
        emotion : np.ndarray [shape=(n, len(labels))], float32
        intensity : np.ndarray [shape=(n, len(intensities))], float32
        """
        emo = np.zeros((len(x), len(self.labels)), np.float32)
        inten = np.zeros((len(x), len(self.intensities)), np.float32)
        for i in range(0, len(x), batch_size):
            out = self.model(x[i : i + batch_size], training=False)
            emo[i : i + batch_size], inten[i : i + batch_size] = np.asarray(out["emotion"]), np.asarray(out["intensity"])
        return emo, inten


def save_bundle(
    out_dir: str | Path,
    model: keras.Model,
    *,
    feature_cfg: FeatureConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    info: dict[str, Any],
) -> Path:
    """Write the model (weights only, no optimizer state) and `bundle.json` into `out_dir`.

    Parameters
    ----------
    out_dir : str or Path
        Bundle folder (created).
    model : keras.Model
        The trained network.
    feature_cfg, model_cfg, train_cfg : FeatureConfig, ModelConfig, TrainConfig
        Its configs, saved in `bundle.json`.
    info : dict
        Further `bundle.json` entries (e.g. ``training_command``).

    Returns
    -------
    Path
        `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inference = keras.Model.from_config(model.get_config())  # uncompiled: the optimizer's state stays behind
    inference.set_weights(model.get_weights())
    inference.save(out_dir / MODEL_FILE)
    meta = {
        "format": 1,
        "labels": list(EMOTIONS),
        "intensities": list(INTENSITIES),
        "feature_config": feature_cfg.to_dict(),
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "sha256": sha256_file(out_dir / MODEL_FILE),
        **info,
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out_dir


def resolve_bundle_path(spec: str | Path) -> Path:
    """A bundle directory, or `default` (the encoder model) or `cnn` (the CNN pair), shipped in the package.

    Parameters
    ----------
    spec : str or Path
        "default", "cnn" or a folder.

    Returns
    -------
    Path
        The folder (not checked).
    """
    return {"default": DEFAULT_BUNDLE, "cnn": CNN_BUNDLE}.get(str(spec), Path(spec))


def _read_meta(path: Path) -> dict[str, Any]:
    meta_path, model_path = path / META_FILE, path / MODEL_FILE
    if not meta_path.exists() or not model_path.exists():
        raise BundleError(f"{path} is not a model bundle (needs {META_FILE} and {MODEL_FILE})")
    return json.loads(meta_path.read_text())


def load_bundle(spec: str | Path, *, threads: int = 0) -> Bundle | EncoderBundle:
    """Load and verify a bundle folder (or `default`): an encoder bundle or a CNN bundle.

    Parameters
    ----------
    spec : str or Path
        As `resolve_bundle_path`.
    threads : int
        Intra-op threads of an encoder bundle's ONNX Runtime session (0: one per core); a
        CNN bundle runs on TensorFlow's pools (`ser_core.threads`).

    Returns
    -------
    Bundle or EncoderBundle

    Raises
    ------
    BundleError
        A CNN bundle's files are missing, its `model.keras` does not match its sha256, or
        its wideband companion does not fit it.
    """
    path = resolve_bundle_path(spec)
    if is_encoder_bundle(path):
        return load_encoder_bundle(path, threads=threads)
    meta = _read_meta(path)
    model_path = path / MODEL_FILE
    digest = sha256_file(model_path)
    if digest != meta.get("sha256"):
        raise BundleError(f"{model_path} does not match the sha256 recorded in {META_FILE}")
    model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    info = {k: v for k, v in meta.items()
            if k not in ("labels", "intensities", "feature_config", "model_config", "sha256", WIDEBAND_DIR)}
    feature_config, model_config = _saved_configs(meta)
    wideband = None
    if WIDEBAND_DIR in meta:
        wideband = load_bundle(path / WIDEBAND_DIR)
        _check_companion(meta, _read_meta(path / WIDEBAND_DIR))
    return Bundle(
        model=model,
        feature_config=feature_config,
        model_config=model_config,
        path=path,
        sha256=digest,
        labels=tuple(meta["labels"]),
        intensities=tuple(meta["intensities"]),
        info=info,
        wideband=wideband,
    )


def _check_companion(meta: dict[str, Any], companion: dict[str, Any]) -> None:
    """A wideband companion must be the one recorded in the bundle, read the bundle's
    preprocessed waveform in the same windows, with the same labels, and have no companion
    itself."""
    recorded = meta.get(WIDEBAND_DIR, {}).get("sha256", companion["sha256"])
    if recorded != companion["sha256"]:
        raise BundleError(f"the wideband companion is not the one recorded in the bundle's {META_FILE}")
    (own, _), (other, _) = _saved_configs(meta), _saved_configs(companion)
    differing = [f for f in SHARED_FIELDS if getattr(own, f) != getattr(other, f)]
    if differing:
        raise BundleError(f"the wideband companion differs from its bundle in {', '.join(differing)}")
    if (meta["labels"], meta["intensities"]) != (companion["labels"], companion["intensities"]):
        raise BundleError("the wideband companion has other labels than its bundle")
    if WIDEBAND_DIR in companion:
        raise BundleError("a wideband companion cannot carry a companion itself")
    if own.sample_rate < 2 * HIGH_BAND_HZ[1]:
        raise BundleError(f"a {own.sample_rate} Hz bundle cannot hear wideband audio")


def attach_wideband(bundle_dir: str | Path, companion_dir: str | Path) -> str:
    """Copy the bundle `companion_dir` into `bundle_dir` as its wideband companion (replacing
    any earlier one).

    Parameters
    ----------
    bundle_dir, companion_dir : str or Path
        CNN bundle folders.

    Returns
    -------
    str
        The pair's model id (`combined_id`).

    Raises
    ------
    BundleError
        Either folder is not a bundle, or the companion does not fit the bundle.
    """
    bundle_dir, companion_dir = Path(bundle_dir), Path(companion_dir)
    meta, companion = _read_meta(bundle_dir), _read_meta(companion_dir)
    meta.pop(WIDEBAND_DIR, None)
    _check_companion(meta, companion)
    target = bundle_dir / WIDEBAND_DIR
    target.mkdir(exist_ok=True)
    for name in (MODEL_FILE, META_FILE):
        shutil.copyfile(companion_dir / name, target / name)
    meta[WIDEBAND_DIR] = {"sha256": companion["sha256"]}
    (bundle_dir / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return combined_id(meta["sha256"], companion["sha256"])


def _score_files_encoder(bundle: EncoderBundle, paths: Sequence[str | Path], telephone: bool):
    """Per file: emotion and intensity of the whole (trimmed) utterance, its seconds, and 1 window."""
    states, seconds, errors = {}, {}, {}
    for i, p in enumerate(paths):
        try:
            y = load_preprocessed(p, bundle.prep_config, telephone_line if telephone else None)
        except AudioError as exc:
            errors[i] = f"{exc.code}: {exc}"
            continue
        states[i], seconds[i] = bundle.states(y), y.size / bundle.prep_config.sample_rate
    ok = np.array(sorted(states), dtype=np.int64)
    emo, inten = bundle.score_states([states[i] for i in ok]) if len(ok) else (np.zeros((0, 8)), np.zeros((0, 2)))
    return ok, emo, inten, np.ones(len(ok), np.int64), seconds, errors


def predict_files(
    bundle: Bundle | EncoderBundle, paths: Sequence[str | Path], telephone: bool = False,
) -> pd.DataFrame:
    """One row per file: class probabilities (columns named by class), top label,
    confidence, intensity, valence, arousal, the seconds of sound scored after trimming
    (`speech_s`) and the number of model `windows` averaged over them; unusable files get
    an `error` and no scores.

    A whole utterance is scored, not cropped. An encoder bundle encodes the trimmed
    utterance once and its head pools over all its frames (`windows` is 1). A CNN bundle's
    fixed-length input slides over it (`extract_windows`, half-overlapping windows) and the
    windows' probabilities are averaged (with a wideband companion, over both networks
    where the audio is wideband).
    With `telephone`, each file first goes through the simulated telephone channel.

    Parameters
    ----------
    bundle : Bundle or EncoderBundle
        The model (`load_bundle`).
    paths : sequence of str or Path
        Audio files of one speaker each (a multi-channel file gets an ``error``).
    telephone : bool
        Score each file through `telephone_line` first.

    Returns
    -------
    pandas.DataFrame
        One row per path, in order: ``path``, one probability column per class in
        `bundle.labels`, ``label``, ``confidence``, ``intensity``, ``valence``, ``arousal``,
        ``speech_s`` (seconds), ``windows`` and ``error`` (``"<code>: <message>"`` or NaN).
    """
    score = _score_files_encoder if isinstance(bundle, EncoderBundle) else _score_files_cnn
    with threadpool_limits(limits=1, user_api="blas"):  # an idle pool would spin beside the model (ser_core.threads)
        ok, emo, inten, n, seconds, errors = score(bundle, paths, telephone)
    df = pd.DataFrame({"path": [str(p) for p in paths]})
    df = df.join(pd.DataFrame(emo, columns=list(bundle.labels), index=ok))
    df["label"] = pd.Series([bundle.labels[j] for j in emo.argmax(axis=1)], index=ok, dtype=object)
    df["confidence"] = pd.Series(emo.max(axis=1), index=ok, dtype=float)
    df["intensity"] = pd.Series([bundle.intensities[j] for j in inten.argmax(axis=1)], index=ok, dtype=object)
    va = valence_arousal(emo)
    df["valence"] = pd.Series(va[:, 0], index=ok, dtype=float)
    df["arousal"] = pd.Series(va[:, 1], index=ok, dtype=float)
    df["speech_s"] = pd.Series(seconds, dtype=float).reindex(df.index)
    df["windows"] = pd.Series(n, index=ok, dtype="Int64")
    df["error"] = pd.Series(errors, dtype=object).reindex(df.index)
    return df


def _score_files_cnn(bundle: Bundle, paths: Sequence[str | Path], telephone: bool):
    """Per file: emotion and intensity averaged over the CNN's windows (`extract_windows`)."""
    cfg, inputs = bundle.feature_config, bundle.inputs
    windows: list[Routed] = []
    owner: list[int] = []
    seconds: dict[int, float] = {}
    errors: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            y = load_preprocessed(p, cfg, telephone_line if telephone else None)
            routed = inputs.windows(y)
            n = len(routed[0])
            windows += [tuple(w[j] if w is not None else None for w in routed) for j in range(n)]
            owner += [i] * n
            seconds[i] = y.size / cfg.sample_rate
        except AudioError as exc:
            errors[i] = f"{exc.code}: {exc}"
    emo_w, inten_w = bundle.predict_routed(windows)
    ok, file_of_window, n = np.unique(np.asarray(owner, dtype=np.int64), return_inverse=True, return_counts=True)
    emo, inten = (np.zeros((len(ok), w.shape[1]), np.float32) for w in (emo_w, inten_w))
    np.add.at(emo, file_of_window, emo_w)
    np.add.at(inten, file_of_window, inten_w)
    return ok, emo / n[:, None], inten / n[:, None], n, seconds, errors


def read_bundle_inputs(spec: str | Path) -> tuple[BundleInputs | EncoderInputs, str]:
    """How the bundle's networks read a waveform, and its model id, from `bundle.json`
    (and its companion's), without loading Keras weights.

    Parameters
    ----------
    spec : str or Path
        As `resolve_bundle_path`.

    Returns
    -------
    inputs : BundleInputs or EncoderInputs
    model_id : str

    Raises
    ------
    BundleError
        A CNN bundle's files are missing, or its companion does not fit it.
    """
    path = resolve_bundle_path(spec)
    if is_encoder_bundle(path):
        return read_encoder_inputs(path)
    metas = [_read_meta(path)]
    if WIDEBAND_DIR in metas[0]:
        metas.append(_read_meta(path / WIDEBAND_DIR))
        _check_companion(*metas)
    configs = [_saved_configs(m) for m in metas]
    inputs = BundleInputs(tuple((f, input_name(m)) for f, m in configs))
    return inputs, combined_id(*(m["sha256"] for m in metas))


def _saved_configs(meta: dict[str, Any]) -> tuple[FeatureConfig, ModelConfig]:
    """The feature and model configs of `bundle.json`, read as they were saved (`from_saved`)."""
    return FeatureConfig.from_saved(meta["feature_config"]), ModelConfig.from_saved(meta["model_config"])


def attach_cross_validation(bundle_dir: str | Path, cv_run: str | Path) -> dict[str, Any]:
    """Record a finished `folds` run (its command, per-fold and mean figures) in `bundle.json`.

    Refuses a run whose feature, model or training config differs from the bundle's
    (compared as config objects, so fields added later with their defaults still match).

    Parameters
    ----------
    bundle_dir : str or Path
        The bundle.
    cv_run : str or Path
        Run folder of `ser train --protocol folds` (config.json, metrics.json, command.txt).

    Returns
    -------
    dict
        The ``cross_validation`` entry written: ``command``, ``protocol``, ``channels``,
        ``mean`` and ``folds``.

    Raises
    ------
    BundleError
        The run's configs differ from the bundle's.
    """
    meta_path = Path(bundle_dir) / META_FILE
    meta = json.loads(meta_path.read_text())
    run = Path(cv_run)
    config = json.loads((run / "config.json").read_text())
    differing = differing_configs(config, meta)
    if differing:
        raise BundleError(f"{run} was run with another {differing[0]} than the bundle")
    results = json.loads((run / "metrics.json").read_text())
    meta["cross_validation"] = {
        "command": (run / "command.txt").read_text().strip(),
        "protocol": results["protocol"], "channels": results["channels"],
        "mean": results["mean"], "folds": results["folds"],
    }
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta["cross_validation"]
