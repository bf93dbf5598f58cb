"""Model bundles: the Keras model plus everything needed to serve it identically.

A bundle is a directory with `model.keras` and `bundle.json` (feature, model and
training configs, label lists, the training command, cross-validation metrics and the
sha256 of `model.keras`). Loading verifies the hash and uses Keras safe mode.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from . import models  # noqa: F401  (registers custom layers for deserialisation)
from .audio import AudioError, load_preprocessed
from .config import FeatureConfig, ModelConfig, TrainConfig, differing_configs
from .features import INPUT_TIME_AXIS, extract_windows, speaker_standardize
from .labels import EMOTIONS, INTENSITIES, valence_arousal
from .models import input_name

MODEL_FILE = "model.keras"
META_FILE = "bundle.json"
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default_model"


class BundleError(RuntimeError):
    pass


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Bundle:
    model: keras.Model
    feature_config: FeatureConfig
    model_config: ModelConfig
    path: Path
    sha256: str
    labels: tuple[str, ...] = EMOTIONS
    intensities: tuple[str, ...] = INTENSITIES
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """Short, stable identifier of the weights (sha256 prefix)."""
        return self.sha256[:12]

    def predict_inputs(self, x: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Emotion (n, 8) and intensity (n, 2) probabilities for model inputs."""
        emo = np.zeros((len(x), len(self.labels)), np.float32)
        inten = np.zeros((len(x), len(self.intensities)), np.float32)
        for i in range(0, len(x), batch_size):
            out = self.model(x[i : i + batch_size], training=False)
            emo[i : i + batch_size], inten[i : i + batch_size] = np.asarray(out["emotion"]), np.asarray(out["intensity"])
        return emo, inten


def save_bundle(
    out_dir: str | Path,
    model: keras.Model,
    feature_cfg: FeatureConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    info: dict[str, Any],
) -> Path:
    """Write the model (weights only, no optimizer state) and `bundle.json` into `out_dir`."""
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
    """A bundle directory, or the word `default` for the model shipped in the package."""
    return DEFAULT_BUNDLE if str(spec) == "default" else Path(spec)


def load_bundle(spec: str | Path) -> Bundle:
    path = resolve_bundle_path(spec)
    meta_path, model_path = path / META_FILE, path / MODEL_FILE
    if not meta_path.exists() or not model_path.exists():
        raise BundleError(f"{path} is not a model bundle (needs {META_FILE} and {MODEL_FILE})")
    meta = json.loads(meta_path.read_text())
    digest = sha256_file(model_path)
    if digest != meta.get("sha256"):
        raise BundleError(f"{model_path} does not match the sha256 recorded in {META_FILE}")
    model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    info = {k: v for k, v in meta.items() if k not in ("labels", "intensities", "feature_config", "model_config", "sha256")}
    feature_config, model_config = _saved_configs(meta)
    return Bundle(
        model=model,
        feature_config=feature_config,
        model_config=model_config,
        path=path,
        sha256=digest,
        labels=tuple(meta["labels"]),
        intensities=tuple(meta["intensities"]),
        info=info,
    )


def predict_files(
    bundle: Bundle, paths: Sequence[str | Path], telephone: bool = False, speakers: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """One row per file: class probabilities (columns named by class), top label,
    confidence, intensity, valence, arousal, the seconds of sound scored after trimming
    (`speech_s`) and the number of model `windows` averaged over them; unusable files get
    an `error` and no scores.

    A whole utterance is scored, not cropped: the model's fixed-length input slides over
    it (`extract_windows`, half-overlapping windows) and the windows' probabilities are
    averaged. With `telephone`, each file first goes through the simulated telephone
    channel. `speakers` (one id per file) groups the files whose statistics a bundle
    trained with `speaker_norm` standardises together; without it each file is its own group."""
    cfg, name = bundle.feature_config, input_name(bundle.model_config)
    windows: list[np.ndarray] = []
    owner: list[int] = []
    seconds: dict[int, float] = {}
    errors: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            y = load_preprocessed(p, cfg, telephone=telephone)
            windows.append(extract_windows(y, cfg, name))
            owner += [i] * len(windows[-1])
            seconds[i] = y.size / cfg.sample_rate
        except AudioError as exc:
            errors[i] = f"{exc.code}: {exc}"
    x = np.concatenate(windows) if windows else np.zeros((0,))
    if windows and cfg.speaker_norm:
        groups = np.asarray(speakers if speakers is not None else range(len(paths)))[owner]
        x = speaker_standardize(x, groups, 1 + INPUT_TIME_AXIS[name])
    emo_w, inten_w = bundle.predict_inputs(x)
    ok, file_of_window, n = np.unique(np.asarray(owner, dtype=np.int64), return_inverse=True, return_counts=True)
    emo, inten = (np.zeros((len(ok), w.shape[1]), np.float32) for w in (emo_w, inten_w))
    np.add.at(emo, file_of_window, emo_w)
    np.add.at(inten, file_of_window, inten_w)
    emo, inten = emo / n[:, None], inten / n[:, None]
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


def read_bundle_configs(spec: str | Path) -> tuple[FeatureConfig, ModelConfig, str]:
    """Feature and model configs and the model id from `bundle.json`, without loading Keras weights."""
    meta = json.loads((resolve_bundle_path(spec) / META_FILE).read_text())
    return *_saved_configs(meta), meta["sha256"][:12]


def _saved_configs(meta: dict[str, Any]) -> tuple[FeatureConfig, ModelConfig]:
    """The feature and model configs of `bundle.json`, read as they were saved (`from_saved`)."""
    return FeatureConfig.from_saved(meta["feature_config"]), ModelConfig.from_saved(meta["model_config"])


def attach_cross_validation(bundle_dir: str | Path, cv_run: str | Path) -> dict[str, Any]:
    """Record a finished `folds` run (its command, per-fold and mean figures) in `bundle.json`.

    Refuses a run whose feature, model or training config differs from the bundle's
    (compared as config objects, so fields added later with their defaults still match).
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
