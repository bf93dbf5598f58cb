"""Encoder bundles: a frozen pretrained encoder plus a trained emotion head, served as one.

A bundle is a folder with `head.keras` (the head, `ser_core.head`) and `bundle.json`:
``kind: "encoder"``, the labels, the preprocessing, head and training configs, the
encoder it was trained on (name, sha256 of its weights, licence) and each training corpus
with its licence. The encoder weights themselves ship inside the package
(`ser_core/encoders/<name>/`); loading checks that the installed weights are the ones the
head was trained on, and the head's own sha256, and loads the head in Keras safe mode.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import head as _head  # noqa: F401  (registers the head's layers for deserialisation)
from .config import FeatureConfig
from .encoder import encode, encoder_spec, load_encoder, sha256_file
from .head import HeadConfig
from .labels import EMOTIONS, INTENSITIES
from .scoring import predict_states

HEAD_FILE = "head.keras"
META_FILE = "bundle.json"
KIND = "encoder"
SEGMENT_S = 6.0  # the longest piece of a turn the job scores at once: the head's longest training crop


class EncoderBundleError(RuntimeError):
    pass


@dataclass(frozen=True)
class EncoderInputs:
    """How the job reads a waveform for an encoder bundle, without loading Keras: the
    preprocessed segment itself is the model input (one network, so a 1-tuple)."""

    feature_config: FeatureConfig
    window_s: float = SEGMENT_S

    def segment(self, y: np.ndarray) -> tuple[np.ndarray]:
        """The model input of one preprocessed segment.

        Parameters
        ----------
        y : np.ndarray [shape=(n,)], float32
            The segment after the bundle's preprocessing, at `feature_config.sample_rate`.

        Returns
        -------
        tuple of np.ndarray
            ``(y,)``: the waveform itself, encoded later by the bundle.
        """
        return (y,)


@dataclass
class EncoderBundle:
    """A loaded encoder bundle: `score_waves` turns preprocessed waveforms into scores."""

    head: keras.Model
    encoder: keras.Model
    prep_config: FeatureConfig
    head_config: HeadConfig
    path: Path
    sha256: str
    labels: tuple[str, ...] = EMOTIONS
    intensities: tuple[str, ...] = INTENSITIES
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """Short, stable identifier of the head's weights (sha256 prefix)."""
        return self.sha256[:12]

    def states(self, wave: np.ndarray) -> np.ndarray:
        """The encoder's hidden states of one waveform.

        Parameters
        ----------
        wave : np.ndarray [shape=(n,)], float32
            Preprocessed audio at 16 kHz.

        Returns
        -------
        np.ndarray [shape=(n_layers + 1, ceil((n // 160) / 2), width)], float32
            Every hidden state (the convolution stem's, then each block's), 50 frames per second.
        """
        return encode(self.encoder, wave)

    def score_states(self, states: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Emotion and intensity probabilities of encoder states (`ser_core.scoring`).

        Parameters
        ----------
        states : sequence of np.ndarray [shape=(n_layers + 1, frames_i, width)]
            One per clip or segment, of any lengths.

        Returns
        -------
        emotion : np.ndarray [shape=(len(states), 8)], float32
            Probabilities over `labels`.
        intensity : np.ndarray [shape=(len(states), 2)], float32
            Probabilities over `intensities`.
        """
        return predict_states(self.head, states)

    def score_waves(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Emotion and intensity probabilities of preprocessed waveforms: each is encoded once,
        on its own as in training (so its scores do not depend on the other waveforms of the
        batch: int8 activations are quantised over a whole input), and scored over all its frames.

        Parameters
        ----------
        waves : sequence of np.ndarray [shape=(n_i,)], float32
            Preprocessed audio at 16 kHz, one per clip or segment.

        Returns
        -------
        emotion, intensity : np.ndarray [shape=(len(waves), 8)], [shape=(len(waves), 2)]
            As :meth:`score_states`.
        """
        return self.score_states([encode(self.encoder, w) for w in waves])

    @property
    def inputs(self) -> EncoderInputs:
        return EncoderInputs(self.prep_config)

    def predict_routed(self, items: Sequence[tuple[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """The job's batches scored by :meth:`score_waves`.

        Parameters
        ----------
        items : sequence of tuple of np.ndarray
            `EncoderInputs.segment` of each segment.

        Returns
        -------
        emotion, intensity : np.ndarray [shape=(len(items), 8)], [shape=(len(items), 2)]
        """
        return self.score_waves([item[0] for item in items])


def read_encoder_inputs(path: str | Path) -> tuple[EncoderInputs, str]:
    """The job's inputs and the model id of an encoder bundle, from `bundle.json` alone
    (no Keras, no encoder weights: what the job's launcher needs).

    Parameters
    ----------
    path : str or Path
        The bundle folder.

    Returns
    -------
    inputs : EncoderInputs
    model_id : str
        The first 12 hex digits of the head's sha256.
    """
    meta = json.loads((Path(path) / META_FILE).read_text())
    return EncoderInputs(FeatureConfig.from_saved(meta["prep_config"])), meta["sha256"][:12]


def save_encoder_bundle(out_dir: str | Path, head: keras.Model, *, head_cfg: HeadConfig, train_cfg: Any,
                        prep: FeatureConfig, info: dict[str, Any]) -> Path:
    """Write `head.keras` (weights and architecture, no optimizer state) and `bundle.json`.

    Parameters
    ----------
    out_dir : str or Path
        The bundle folder (created).
    head : keras.Model
        A trained head (`ser_core.head.build_head`).
    head_cfg : HeadConfig
        Its architecture, with the encoder it reads.
    train_cfg : HeadTrainConfig
        How it was trained (recorded).
    prep : FeatureConfig
        The preprocessing its training clips went through, applied again at serving.
    info : dict
        Further records: training command, corpora and their licences, clip counts.

    Returns
    -------
    Path
        `out_dir`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inference = keras.Model.from_config(head.get_config())
    inference.set_weights(head.get_weights())
    inference.save(out / HEAD_FILE)
    spec = encoder_spec(head_cfg.encoder)
    enc_meta = json.loads((spec.directory / "encoder.json").read_text())
    meta = {
        "format": 2, "kind": KIND,
        "labels": list(EMOTIONS), "intensities": list(INTENSITIES),
        "prep_config": prep.to_dict(), "head_config": head_cfg.to_dict(), "train_config": train_cfg.to_dict(),
        "encoder": {"name": spec.name, "sha256": spec.npz_sha256, "precision": head_cfg.encoder_precision,
                    "licence": enc_meta["licence"],
                    "copyright": enc_meta["copyright"], "source": enc_meta["source"]},
        "sha256": sha256_file(out / HEAD_FILE),
        **info,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out


def is_encoder_bundle(path: str | Path) -> bool:
    """Whether a folder holds an encoder bundle.

    Parameters
    ----------
    path : str or Path
        A bundle folder.

    Returns
    -------
    bool
        True where its `bundle.json` says ``kind: encoder``.
    """
    meta = Path(path) / META_FILE
    return meta.exists() and json.loads(meta.read_text()).get("kind") == KIND


def load_encoder_bundle(path: str | Path, *, threads: int = 0) -> EncoderBundle:
    """Load and verify an encoder bundle folder.

    Parameters
    ----------
    path : str or Path
        The bundle folder.
    threads : int
        Intra-op threads of the encoder's ONNX Runtime session (0: one per core).

    Returns
    -------
    EncoderBundle
        With its head (Keras safe mode) and the installed encoder it was trained on.

    Raises
    ------
    EncoderBundleError
        If the head is missing or does not match its recorded sha256, or the installed
        encoder weights are not the ones the head was trained on.
    """
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    head_path = path / HEAD_FILE
    if not head_path.exists():
        raise EncoderBundleError(f"{path} is not an encoder bundle (needs {HEAD_FILE})")
    digest = sha256_file(head_path)
    if digest != meta.get("sha256"):
        raise EncoderBundleError(f"{head_path} does not match the sha256 recorded in {META_FILE}")
    head_cfg = HeadConfig.from_saved(meta["head_config"])
    spec = encoder_spec(head_cfg.encoder)
    if spec.npz_sha256 != meta["encoder"]["sha256"]:
        raise EncoderBundleError(f"the installed {spec.name} weights (sha256 {spec.npz_sha256[:12]}…) are not the "
                                 f"ones this head was trained on ({meta['encoder']['sha256'][:12]}…)")
    head = keras.saving.load_model(head_path, safe_mode=True, compile=False)
    info = {k: v for k, v in meta.items() if k not in ("labels", "intensities", "prep_config", "head_config", "sha256")}
    encoder = load_encoder(head_cfg.encoder, precision=head_cfg.encoder_precision, threads=threads)
    return EncoderBundle(head=head, encoder=encoder,
                         prep_config=FeatureConfig.from_saved(meta["prep_config"]), head_config=head_cfg,
                         path=path, sha256=digest, labels=tuple(meta["labels"]),
                         intensities=tuple(meta["intensities"]), info=info)
