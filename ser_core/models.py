"""The study's two CNNs (Keras 3 functional API), each with two outputs:
`emotion` (8-way softmax) and `intensity` (normal/strong softmax)."""
from __future__ import annotations

import keras
from keras import layers, ops

from .config import FeatureConfig, ModelConfig
from .labels import EMOTIONS, INTENSITIES


@keras.saving.register_keras_serializable(package="ser_core")
class FrameContext(layers.Layer):
    """Splice each frame with its `context` neighbours on both sides (edge-padded):
    (batch, time, feat) -> (batch, time, feat * (2 * context + 1)).

    Parameters
    ----------
    context : int
        Neighbouring frames on each side; 0: the identity.
    """

    def __init__(self, context: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.context = context

    def call(self, x):
        """Splice the frames.

        Parameters
        ----------
        x : tensor [shape=(batch, time, feat)]

        Returns
        -------
        tensor [shape=(batch, time, feat * (2 * context + 1))]
            Frames t - context ... t + context, concatenated along the last axis.
        """
        c = self.context
        if c == 0:
            return x
        first, last = x[:, :1], x[:, -1:]
        padded = ops.concatenate([first] * c + [x] + [last] * c, axis=1)
        steps = ops.shape(x)[1]
        return ops.concatenate([padded[:, i : i + steps] for i in range(2 * c + 1)], axis=-1)

    def compute_output_shape(self, input_shape):
        """The output shape.

        Parameters
        ----------
        input_shape : tuple
            (batch, time, feat).

        Returns
        -------
        tuple
            (batch, time, feat * (2 * context + 1)).
        """
        b, t, f = input_shape
        return (b, t, f * (2 * self.context + 1))

    def get_config(self):
        """The layer's Keras config, with `context`.

        Returns
        -------
        dict
        """
        return {**super().get_config(), "context": self.context}


def _heads(x, cfg: ModelConfig) -> dict:
    x = layers.Dense(cfg.dense_units, activation="relu", kernel_regularizer=_reg(cfg), name="dense")(x)
    x = layers.Dropout(cfg.dropout)(x)
    return {
        "emotion": layers.Dense(len(EMOTIONS), activation="softmax", name="emotion")(x),
        "intensity": layers.Dense(len(INTENSITIES), activation="softmax", name="intensity")(x),
    }


def _reg(cfg: ModelConfig):
    return keras.regularizers.L2(cfg.l2) if cfg.l2 else None


def _pool_time(x, cfg: ModelConfig):
    """(batch, time, channels) -> vector: flatten (the study) or mean+max over time."""
    if cfg.pooling == "flatten":
        return layers.Flatten()(x)
    return layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])


def _conv_blocks(x, cfg: ModelConfig, conv, pool, kernel: int):
    """Filtering blocks: convolution, batch norm, ReLU, max-pooling by 2, dropout."""
    for i, f in enumerate(cfg.filters):
        x = conv(f, kernel, padding="same", use_bias=False, kernel_regularizer=_reg(cfg), name=f"conv{i}")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = pool(2)(x)
        x = layers.Dropout(cfg.dropout / 2)(x)
    return x


def build_baseline(cfg: ModelConfig, feature_cfg: FeatureConfig) -> keras.Model:
    """The study's 1-D CNN on MFCCs: frame context first, then 1-D convolutions over time.

    Parameters
    ----------
    cfg : ModelConfig
        Architecture (filters, pooling, context, dense units, dropout, L2).
    feature_cfg : FeatureConfig
        Sets the input shape (`mfcc_shape`).

    Returns
    -------
    keras.Model
        Input ``mfcc`` [shape=(batch, mfcc_frames, n_mfcc)]; outputs ``emotion``
        [shape=(batch, 8)] and ``intensity`` [shape=(batch, 2)], softmax probabilities.
    """
    inputs = keras.Input(feature_cfg.mfcc_shape, name="mfcc")
    x = FrameContext(cfg.context, name="context")(inputs)
    x = _conv_blocks(x, cfg, layers.Conv1D, layers.MaxPooling1D, kernel=5)
    return keras.Model(inputs, _heads(_pool_time(x, cfg), cfg), name="baseline")


def build_deep(cfg: ModelConfig, feature_cfg: FeatureConfig) -> keras.Model:
    """The study's 2-D CNN on the (mel, time, 3) cube: conv blocks with batch norm and dropout.

    Parameters
    ----------
    cfg : ModelConfig
        Architecture (filters, pooling, dense units, dropout, L2).
    feature_cfg : FeatureConfig
        Sets the input shape (`cube_shape`).

    Returns
    -------
    keras.Model
        Input ``cube`` [shape=(batch, n_mels, frames, 3)]; outputs ``emotion``
        [shape=(batch, 8)] and ``intensity`` [shape=(batch, 2)], softmax probabilities.
    """
    inputs = keras.Input(feature_cfg.cube_shape, name="cube")
    x = _conv_blocks(inputs, cfg, layers.Conv2D, layers.MaxPooling2D, kernel=3)
    if cfg.pooling != "flatten":  # average over frequency, keep time for pooling
        freq, time, ch = x.shape[1:]
        x = layers.AveragePooling2D((freq, 1), name="freq_mean")(x)
        x = layers.Reshape((time, ch))(x)
    return keras.Model(inputs, _heads(_pool_time(x, cfg), cfg), name="deep")


def build_model(cfg: ModelConfig, feature_cfg: FeatureConfig) -> keras.Model:
    """`build_baseline` for ``cfg.kind == "baseline"``, else `build_deep`.

    Parameters
    ----------
    cfg : ModelConfig
        Architecture.
    feature_cfg : FeatureConfig
        Sets the input shape.

    Returns
    -------
    keras.Model
    """
    return (build_baseline if cfg.kind == "baseline" else build_deep)(cfg, feature_cfg)


def input_name(cfg: ModelConfig) -> str:
    """Which `Features` field feeds the model.

    Parameters
    ----------
    cfg : ModelConfig

    Returns
    -------
    {"mfcc", "cube"}
    """
    return "mfcc" if cfg.kind == "baseline" else "cube"
