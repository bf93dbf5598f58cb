"""The emotion head on a frozen encoder: the encoder's layers (concatenated per frame, or mixed
by a learned weighted sum), a frame-wise projection, a 1-D CNN over the frames and attentive
statistics pooling, with the emotion and intensity outputs.

Inputs: ``states`` (batch, layers, frames, width), the hidden states of every encoder
layer (`ser_core.encoder.encode`), and ``mask`` (batch, frames), 1 on real frames and 0 on
padding. Outputs: ``emotion`` (batch, 8) and ``intensity`` (batch, 2) probabilities.

The losses take the classes each clip's corpus has (`ser_core.training.corpora.class_mask`): the
emotion loss is the cross-entropy of the softmax renormalised over those classes, so a
corpus without calm or surprised never pushes those classes down.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import keras
import numpy as np
from keras import layers, ops

from .config import _JsonConfig
from .encoder import PRECISIONS
from .labels import EMOTIONS, INTENSITIES


@dataclass(frozen=True)
class HeadConfig(_JsonConfig):
    """Architecture of the head, and the encoder (and its precision) whose states it reads."""

    ADDED_LATER: ClassVar[dict[str, Any]] = {"encoder_precision": "float32", "layers": "mix", "input_dropout": 0.0}
    LAYERS: ClassVar[tuple[str, ...]] = ("concat", "mix")

    encoder: str = "whisper-base"   # ser_core/encoders/<name>
    encoder_precision: str = "int8"  # "float32" or "int8" (`ser_core.encoder.quantize_int8`): trained and served on it
    layers: str = "concat"          # "concat": each frame's layers side by side; "mix": `LayerMix`, their weighted sum
    input_dropout: float = 0.1      # dropout on the concatenated layers ("concat" only)
    frame_norm: bool = True         # layer-normalise each mixed frame, dropping its overall magnitude ("mix" only)
    projection: int = 128           # each frame's state projected to this width first (0, none, is allowed with "mix" only)
    conv_channels: int = 128        # the 1-D CNN over frames
    conv_kernel: int = 5
    conv_layers: int = 1
    attention_units: int = 64       # attentive statistics pooling
    dense_units: int = 128          # hidden layer between the pooled statistics and the outputs (0: none)
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.encoder_precision not in PRECISIONS:
            raise ValueError(f"encoder_precision must be one of {PRECISIONS}, not {self.encoder_precision!r}")
        if self.layers not in self.LAYERS:
            raise ValueError(f"layers must be one of {self.LAYERS}, not {self.layers!r}")
        if self.layers == "concat" and not self.projection:
            raise ValueError("layers='concat' needs a projection (the concatenated frame is layers x width wide)")


@keras.saving.register_keras_serializable(package="ser_core")
class LayerMix(layers.Layer):
    """Softmax-weighted sum over the layer axis: (batch, layers, frames, width) -> (batch, frames, width)."""

    def build(self, input_shape):
        """One logit per layer, initialised to 0 (an equal mix).

        Parameters
        ----------
        input_shape : tuple
            (batch, layers, frames, width).
        """
        self.logits = self.add_weight(name="logits", shape=(input_shape[1],), initializer="zeros")

    def call(self, x):
        """Mix the layers.

        Parameters
        ----------
        x : tensor [shape=(batch, layers, frames, width)]

        Returns
        -------
        tensor [shape=(batch, frames, width)]
        """
        w = ops.softmax(self.logits)
        return ops.einsum("bltd,l->btd", x, w)

    def compute_output_shape(self, input_shape):
        """The output shape.

        Parameters
        ----------
        input_shape : tuple
            (batch, layers, frames, width).

        Returns
        -------
        tuple
            (batch, frames, width).
        """
        return (input_shape[0], input_shape[2], input_shape[3])


@keras.saving.register_keras_serializable(package="ser_core")
class MaskFrames(layers.Layer):
    """Zero the padded frames: (x (batch, frames, c), mask (batch, frames)) -> x * mask."""

    def call(self, inputs):
        """Zero the padded frames.

        Parameters
        ----------
        inputs : (tensor, tensor)
            x [shape=(batch, frames, c)] and mask [shape=(batch, frames)], 1 on real frames.

        Returns
        -------
        tensor [shape=(batch, frames, c)]
        """
        x, mask = inputs
        return x * ops.expand_dims(ops.cast(mask, x.dtype), -1)

    def compute_output_shape(self, input_shapes):
        """The output shape: x's.

        Parameters
        ----------
        input_shapes : tuple
            Shapes of x (batch, frames, c) and mask (batch, frames).

        Returns
        -------
        tuple
            (batch, frames, c).
        """
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="ser_core")
class AttentiveStats(layers.Layer):
    """Attentive statistics pooling over the real frames (Okabe et al. 2018): attention
    weights from a small tanh layer, softmax over unmasked frames, then the weighted mean
    and standard deviation, concatenated: (batch, frames, c) -> (batch, 2c).

    Parameters
    ----------
    units : int
        Width of the attention's tanh layer.
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shapes):
        """The attention layers, for x of `input_shapes[0]` = (batch, frames, c).

        Parameters
        ----------
        input_shapes : (tuple, tuple)
            Shapes of x and mask.
        """
        c = input_shapes[0][-1]
        self.hidden = layers.Dense(self.units, activation="tanh", name="hidden")
        self.score = layers.Dense(1, name="score")
        self.hidden.build((None, None, c))
        self.score.build((None, None, self.units))

    def call(self, inputs):
        """Pool the real frames.

        Parameters
        ----------
        inputs : (tensor, tensor)
            x [shape=(batch, frames, c)] and mask [shape=(batch, frames)], 1 on real frames.

        Returns
        -------
        tensor [shape=(batch, 2 * c)]
            Attention-weighted mean, then standard deviation (floored at 1e-3).
        """
        x, mask = inputs
        logits = ops.squeeze(self.score(self.hidden(x)), -1)
        logits = ops.where(mask > 0, logits, ops.full_like(logits, -1e9))
        w = ops.expand_dims(ops.softmax(logits, axis=-1), -1)
        mean = ops.sum(w * x, axis=1)
        var = ops.sum(w * ops.square(x), axis=1) - ops.square(mean)
        return ops.concatenate([mean, ops.sqrt(ops.maximum(var, 1e-6))], axis=-1)

    def compute_output_shape(self, input_shapes):
        """The output shape.

        Parameters
        ----------
        input_shapes : tuple
            Shapes of x (batch, frames, c) and mask (batch, frames).

        Returns
        -------
        tuple
            (batch, 2 * c).
        """
        return (input_shapes[0][0], 2 * input_shapes[0][-1])

    def get_config(self):
        """The layer's Keras config, with `units`.

        Returns
        -------
        dict
        """
        return {**super().get_config(), "units": self.units}


def build_head(cfg: HeadConfig, n_layers: int, width: int, mean=None, variance=None) -> keras.Model:
    """The head for an encoder with `n_layers` hidden states of `width` (Keras functional).

    `mean` and `variance` (n_layers, width) standardise every unit of every layer by its
    statistics over the training frames (a few of Whisper's units are orders of magnitude
    larger than the rest); None: zero mean, unit variance. Then each frame's layers are either
    concatenated (``cfg.layers == "concat"``: n_layers x width values, so the projection
    weighs every unit of every layer) or mixed into one by `LayerMix` (``"mix"``).

    Parameters
    ----------
    cfg : HeadConfig
        Architecture.
    n_layers, width : int
        Hidden states per clip and their width (the encoder's).
    mean, variance : array_like [shape=(n_layers, width)], optional
        Per-unit statistics of the training frames.

    Returns
    -------
    keras.Model
        Inputs ``states`` [shape=(batch, n_layers, frames, width)] and ``mask``
        [shape=(batch, frames)]; outputs ``emotion`` [shape=(batch, 8)] and ``intensity``
        [shape=(batch, 2)], softmax probabilities.
    """
    states = keras.Input((n_layers, None, width), name="states")
    mask = keras.Input((None,), name="mask")
    shape = (n_layers, width)
    mean = np.zeros(shape, np.float32) if mean is None else np.reshape(mean, shape)
    variance = np.ones(shape, np.float32) if variance is None else np.reshape(variance, shape)
    x = layers.Normalization(axis=(1, 3), mean=mean, variance=variance, name="unit_norm")(states)
    if cfg.layers == "concat":
        x = layers.Permute((2, 1, 3), name="frames_first")(x)
        x = layers.Reshape((-1, n_layers * width), name="concat_layers")(x)
        x = layers.Dropout(cfg.input_dropout, name="input_dropout")(x)
    else:
        x = LayerMix(name="layer_mix")(x)
        if cfg.frame_norm:
            x = layers.LayerNormalization(name="frame_norm")(x)
    if cfg.projection:
        x = layers.Dense(cfg.projection, activation="gelu", name="projection")(x)
    for i in range(cfg.conv_layers):
        x = MaskFrames(name=f"mask_{i}")([x, mask])
        x = layers.Conv1D(cfg.conv_channels, cfg.conv_kernel, padding="same", activation="gelu", name=f"conv_{i}")(x)
        x = layers.Dropout(cfg.dropout / 2, name=f"conv_dropout_{i}")(x)
    x = AttentiveStats(cfg.attention_units, name="pool")([x, mask])
    x = layers.Dropout(cfg.dropout, name="pool_dropout")(x)
    if cfg.dense_units:
        x = layers.Dense(cfg.dense_units, activation="gelu", name="dense")(x)
        x = layers.Dropout(cfg.dropout, name="dense_dropout")(x)
    return keras.Model(
        {"states": states, "mask": mask},
        {"emotion": layers.Dense(len(EMOTIONS), activation="softmax", name="emotion")(x),
         "intensity": layers.Dense(len(INTENSITIES), activation="softmax", name="intensity")(x)},
        name="emotion_head",
    )


def masked_emotion_loss(label_smoothing: float = 0.0):
    """Cross-entropy over the classes each clip's corpus has.

    ``y_true`` is (batch, 16): the one-hot target, then the clip's class mask; ``y_pred``
    the (batch, 8) softmax. The probabilities are renormalised over the masked-in classes,
    and label smoothing spreads only over them.

    Parameters
    ----------
    label_smoothing : float in [0, 1]
        Share of the target spread evenly over the clip's classes.

    Returns
    -------
    callable
        ``loss(y_true, y_pred)`` -> tensor [shape=(batch,)], the per-clip loss (nats).
    """

    def loss(y_true, y_pred):
        k = len(EMOTIONS)
        target, allowed = y_true[:, :k], y_true[:, k:]
        p = y_pred * allowed
        p = p / ops.maximum(ops.sum(p, axis=-1, keepdims=True), 1e-12)
        smooth = allowed / ops.maximum(ops.sum(allowed, axis=-1, keepdims=True), 1.0)
        target = (1.0 - label_smoothing) * target + label_smoothing * smooth
        return -ops.sum(target * ops.log(ops.maximum(p, 1e-7)), axis=-1)

    return loss


def masked_intensity_loss(y_true, y_pred):
    """Cross-entropy where the intensity is known.

    Parameters
    ----------
    y_true : tensor [shape=(batch, 3)]
        The one-hot intensity, then 1 where it is known (0: the clip adds no intensity loss).
    y_pred : tensor [shape=(batch, 2)]
        Intensity softmax.

    Returns
    -------
    tensor [shape=(batch,)]
        Per-clip loss (nats).
    """
    target, known = y_true[:, :2], y_true[:, 2]
    return -known * ops.sum(target * ops.log(ops.maximum(y_pred, 1e-7)), axis=-1)
