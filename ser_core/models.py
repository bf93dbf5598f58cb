"""The two networks (Keras 3 functional API), each with two heads:
`emotion` (8-way softmax) and `intensity` (normal/strong softmax)."""
from __future__ import annotations

import keras
from keras import layers, ops

from .config import FeatureConfig, ModelConfig
from .labels import EMOTIONS, INTENSITIES


@keras.saving.register_keras_serializable(package="ser_core")
class FrameContext(layers.Layer):
    """Splice each frame with its `context` neighbours on both sides (edge-padded):
    (batch, time, feat) -> (batch, time, feat * (2 * context + 1))."""

    def __init__(self, context: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.context = context

    def call(self, x):
        c = self.context
        if c == 0:
            return x
        first, last = x[:, :1], x[:, -1:]
        padded = ops.concatenate([first] * c + [x] + [last] * c, axis=1)
        steps = ops.shape(x)[1]
        return ops.concatenate([padded[:, i : i + steps] for i in range(2 * c + 1)], axis=-1)

    def compute_output_shape(self, input_shape):
        b, t, f = input_shape
        return (b, t, f * (2 * self.context + 1))

    def get_config(self):
        return {**super().get_config(), "context": self.context}


@keras.saving.register_keras_serializable(package="ser_core")
class AttentiveStatsPooling(layers.Layer):
    """(batch, time, feat) -> (batch, 2 * feat): mean and standard deviation over time,
    each frame weighted by a learned attention score (attentive statistics pooling)."""

    def __init__(self, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = layers.Dense(units, activation="tanh")
        self.score = layers.Dense(1)

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.score.build((*input_shape[:-1], self.units))

    def call(self, x):
        w = ops.softmax(self.score(self.hidden(x)), axis=1)  # (batch, time, 1)
        mean = ops.sum(w * x, axis=1)
        var = ops.sum(w * ops.square(x), axis=1) - ops.square(mean)
        return ops.concatenate([mean, ops.sqrt(ops.maximum(var, 1e-6))], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="ser_core")
class RealFrames(layers.Layer):
    """(batch, freq, time, channels) edge-padded input -> (batch, time) 1.0 on the
    utterance's real frames, 0.0 on its padding: the trailing run of frames equal to the
    last one, less its first (the last real frame, which the padding repeats); the rule of
    `training.valid_frames`, in the graph."""

    def call(self, x):
        same = ops.cast(ops.all(ops.equal(x, x[:, :, -1:, :]), axis=(1, 3)), "float32")  # (batch, time)
        padding = ops.flip(ops.cumprod(ops.flip(same, axis=1), axis=1), axis=1)
        real = ops.shape(x)[2] - ops.sum(padding, axis=1, keepdims=True) + 1.0
        return ops.cast(ops.arange(ops.shape(x)[2], dtype="float32")[None, :] < real, "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="ser_core")
class MaskedStatsPooling(layers.Layer):
    """[(batch, time, feat), (batch, input_time) real-frame mask] -> (batch, 2 * feat): mean
    and max over the time steps that see at least one real input frame."""

    def call(self, inputs):
        x, real = inputs
        steps = x.shape[1]
        per_step = ops.shape(real)[1] // steps
        m = ops.max(ops.reshape(real, (-1, steps, per_step)), axis=2)[:, :, None]  # (batch, time, 1)
        mean = ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)
        peak = ops.max(x * m + (m - 1.0) * 1e9, axis=1)
        return ops.concatenate([mean, peak], axis=-1)

    def compute_output_shape(self, input_shapes):
        x = input_shapes[0]
        return (x[0], 2 * x[-1])


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
    """(batch, time, channels) -> vector: flatten (the study), mean+max over time, or
    attention-weighted mean+sd over time; with `recurrent_units`, a bidirectional GRU
    first carries context along time."""
    if cfg.pooling == "flatten":
        return layers.Flatten()(x)
    if cfg.recurrent_units:
        x = layers.Bidirectional(layers.GRU(cfg.recurrent_units, return_sequences=True), name="gru")(x)
    if cfg.pooling == "attention":
        return AttentiveStatsPooling(name="attentive_pooling")(x)
    return layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])


def _conv_blocks(x, cfg: ModelConfig, conv, pool, kernel: int):
    """Filtering blocks: convolution, batch norm, ReLU, max-pooling by 2, dropout. With
    `residual`, two convolutions per block and a 1x1 projection shortcut added before the ReLU."""
    def conv_bn(x, filters: int, size: int, name: str):
        x = conv(filters, size, padding="same", use_bias=False, kernel_regularizer=_reg(cfg), name=name)(x)
        return layers.BatchNormalization()(x)

    for i, f in enumerate(cfg.filters):
        y = conv_bn(x, f, kernel, f"conv{i}")
        if cfg.residual:
            y = conv_bn(layers.ReLU()(y), f, kernel, f"conv{i}b")
            y = layers.Add()([y, conv_bn(x, f, 1, f"shortcut{i}")])
        x = layers.ReLU()(y)
        x = pool(2)(x)
        x = layers.Dropout(cfg.dropout / 2)(x)
    return x


def build_baseline(cfg: ModelConfig, feature_cfg: FeatureConfig) -> keras.Model:
    """The study's 1-D CNN on MFCCs: frame context first, then 1-D convolutions over time."""
    inputs = keras.Input(feature_cfg.mfcc_shape, name="mfcc")
    x = FrameContext(cfg.context, name="context")(inputs)
    x = _conv_blocks(x, cfg, layers.Conv1D, layers.MaxPooling1D, kernel=5)
    return keras.Model(inputs, _heads(_pool_time(x, cfg), cfg), name="baseline")


def build_deep(cfg: ModelConfig, feature_cfg: FeatureConfig) -> keras.Model:
    """The study's 2-D CNN on the (mel, time, 3) cube: conv blocks with batch norm and dropout."""
    inputs = keras.Input(feature_cfg.cube_shape, name="cube")
    x = _conv_blocks(inputs, cfg, layers.Conv2D, layers.MaxPooling2D, kernel=3)
    if cfg.pooling != "flatten":  # average over frequency, keep time for pooling
        freq, time, ch = x.shape[1:]
        x = layers.AveragePooling2D((freq, 1), name="freq_mean")(x)
        x = layers.Reshape((time, ch))(x)
    if cfg.pool_real_frames:
        pooled = MaskedStatsPooling(name="real_frame_pooling")([x, RealFrames(name="real_frames")(inputs)])
        return keras.Model(inputs, _heads(pooled, cfg), name="deep")
    return keras.Model(inputs, _heads(_pool_time(x, cfg), cfg), name="deep")


def build_model(cfg: ModelConfig, feature_cfg: FeatureConfig) -> keras.Model:
    return (build_baseline if cfg.kind == "baseline" else build_deep)(cfg, feature_cfg)


def input_name(cfg: ModelConfig) -> str:
    """Which `Features` field feeds the model."""
    return "mfcc" if cfg.kind == "baseline" else "cube"
