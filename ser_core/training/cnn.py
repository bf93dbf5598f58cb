"""Training one of the study's CNNs: augmentation, early stopping on validation UAR."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd

from ..config import FeatureConfig, ModelConfig, TrainConfig
from ..labels import EMOTIONS, INTENSITIES
from ..metrics import unweighted_average_recall
from ..models import build_model


class Targets(NamedTuple):
    emotion: np.ndarray    # (n,) class index into EMOTIONS
    intensity: np.ndarray  # (n,) index into INTENSITIES

    def take(self, index: np.ndarray) -> Targets:
        return Targets(self.emotion[index], self.intensity[index])


def spec_augment(
    x: np.ndarray, rng: np.random.Generator, time_axis: int, freq_axis: int,
    time_masks: int, freq_masks: int, max_frac: float,
) -> np.ndarray:
    """Zero random time and frequency stripes of each example (inputs are standardised,
    so zero is the mean). `x` is a batch; axes count the batch axis."""
    x = x.copy()
    for axis, count in ((time_axis, time_masks), (freq_axis, freq_masks)):
        size = x.shape[axis]
        for i in range(x.shape[0]):
            for _ in range(count):
                width = rng.integers(0, max(1, int(size * max_frac)) + 1)
                start = rng.integers(0, size - width + 1)
                index = [i] + [slice(None)] * (x.ndim - 1)
                index[axis] = slice(start, start + width)
                x[tuple(index)] = 0.0
    return x


class AugmentedBatches:
    """Shuffled mini-batches with SpecAugment and mixup; labels as one-hot dicts.

    `views` are arrays aligned with `x` holding degraded versions of the same clips
    (telephone channel, noise, codec): each example of a batch is taken from `x` or
    one of its views at random, so augmentation does not lengthen an epoch.
    Iterating yields batches forever, reshuffling after each pass (an endless
    generator avoids the per-epoch stall of `keras.utils.PyDataset`'s queue)."""

    def __init__(
        self, x: np.ndarray, y: Targets, cfg: TrainConfig, time_axis: int, freq_axis: int,
        views: Sequence[np.ndarray] = (),
    ):
        if any(v.shape != x.shape for v in views):
            raise ValueError("every view must have the shape of x")
        self.x, self.y, self.cfg, self.views = x, y, cfg, list(views)
        self.axes = (time_axis, freq_axis)
        self.rng = np.random.default_rng(cfg.seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.cfg.batch_size))

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        while True:
            yield from (self[i] for i in range(len(self)))
            self.order = self.rng.permutation(len(self.x))

    def __getitem__(self, i: int):
        c = self.cfg
        idx = self.order[i * c.batch_size : (i + 1) * c.batch_size]
        x = self.x[idx]
        if self.views:
            pick = self.rng.integers(0, 1 + len(self.views), len(idx))
            for v, view in enumerate(self.views, start=1):
                chosen = pick == v
                x[chosen] = view[idx[chosen]]
        x = spec_augment(x, self.rng, *self.axes, c.time_masks, c.freq_masks, c.max_mask_frac)
        emo = np.eye(len(EMOTIONS), dtype=np.float32)[self.y.emotion[idx]]
        inten = np.eye(len(INTENSITIES), dtype=np.float32)[self.y.intensity[idx]]
        if c.mixup_alpha > 0:
            lam = np.float32(self.rng.beta(c.mixup_alpha, c.mixup_alpha))
            perm = self.rng.permutation(len(idx))
            x = lam * x + (1 - lam) * x[perm]
            emo = lam * emo + (1 - lam) * emo[perm]
            inten = lam * inten + (1 - lam) * inten[perm]
        return x, {"emotion": emo, "intensity": inten}


class ValidationUAR(keras.callbacks.Callback):
    """Adds `val_uar` (emotion recall averaged over classes) to each epoch's logs."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.x, batch_size=128, verbose=0)["emotion"]
        logs["val_uar"] = unweighted_average_recall(self.y, probs.argmax(axis=1))


class CopyingSwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras's `SwapEMAWeights`, swapping by copy on the non-TensorFlow backends: Keras's
    swap leaves a weight and its average holding one JAX buffer, which a jitted step then
    donates away ("Array has been deleted")."""

    def _backend_swap_variables(self, optimizer):
        for var, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
            current = keras.ops.convert_to_numpy(var)
            var.assign(keras.ops.convert_to_numpy(average))
            average.assign(current)

    def _backend_finalize_ema_values(self, optimizer):
        for var, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
            average.assign(keras.ops.convert_to_numpy(var))


def compile_model(model: keras.Model, cfg: TrainConfig, steps: int) -> None:
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=max(1, steps * cfg.epochs))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, use_ema=cfg.ema_momentum > 0, ema_momentum=cfg.ema_momentum),
        loss={
            "emotion": keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            "intensity": keras.losses.CategoricalCrossentropy(),
        },
        loss_weights={"emotion": 1.0, "intensity": cfg.intensity_weight},
        metrics={"emotion": ["accuracy"], "intensity": ["accuracy"]},
        # XLA on TensorFlow's CPU doubles the step time of these small convolutions; JAX needs it
        jit_compile=keras.backend.backend() != "tensorflow",
    )


def fit(
    model_cfg: ModelConfig, feature_cfg: FeatureConfig, cfg: TrainConfig,
    x: np.ndarray, y: Targets, val: tuple[np.ndarray, Targets] | None = None,
    verbose: int = 2, views: Sequence[np.ndarray] = (),
) -> tuple[keras.Model, pd.DataFrame]:
    """Train from scratch; with `val`, report validation metrics per epoch and (unless
    `cfg.patience` is 0) stop early on validation UAR, keeping the best epoch's weights.
    `views`: degraded copies of `x`, sampled per example (see `AugmentedBatches`).

    With `cfg.ema_momentum`, validation, early stopping and the returned model use the
    moving average of the weights (Polyak averaging), which smooths epoch-to-epoch swings.

    Returns the model and the per-epoch history (loss/accuracy for train and validation).
    """
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(model_cfg, feature_cfg)
    axes = (1, 2) if model_cfg.kind == "baseline" else (2, 1)  # (time, freq) axes
    batches = AugmentedBatches(x, y, cfg, *axes, views=views)
    compile_model(model, cfg, len(batches))
    callbacks: list[keras.callbacks.Callback] = []
    validation_data = None
    if val is not None and len(val[0]):
        vx, vy = val
        validation_data = (vx, {
            "emotion": np.eye(len(EMOTIONS), dtype=np.float32)[vy.emotion],
            "intensity": np.eye(len(INTENSITIES), dtype=np.float32)[vy.intensity],
        })
        # the EMA weights go into the model at each epoch's end, before validation and early stopping
        callbacks = [CopyingSwapEMAWeights(swap_on_epoch=True)] if cfg.ema_momentum > 0 else []
        callbacks.append(ValidationUAR(vx, vy.emotion))
        if cfg.patience > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping("val_uar", mode="max", patience=cfg.patience, restore_best_weights=True))
    hist = model.fit(iter(batches), steps_per_epoch=len(batches), shuffle=False, validation_data=validation_data,
                     epochs=cfg.epochs, callbacks=callbacks, verbose=verbose)
    history = pd.DataFrame(hist.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return model, history


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Emotion (n, 8) and intensity (n, 2) probabilities."""
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(out["emotion"]), np.asarray(out["intensity"])
