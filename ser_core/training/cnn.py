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
    """A CNN's two targets per clip.

    Attributes
    ----------
    emotion : np.ndarray [shape=(n,), dtype=int]
        Class index into `EMOTIONS`.
    intensity : np.ndarray [shape=(n,), dtype=int]
        Index into `INTENSITIES`.
    """

    emotion: np.ndarray    # (n,) class index into EMOTIONS
    intensity: np.ndarray  # (n,) index into INTENSITIES

    def take(self, index: np.ndarray) -> Targets:
        """The targets of the clips at `index`.

        Parameters
        ----------
        index : np.ndarray [shape=(k,), dtype=int]
            Positions into the clips.

        Returns
        -------
        Targets
            Both arrays of shape (k,).
        """
        return Targets(self.emotion[index], self.intensity[index])


def spec_augment(
    x: np.ndarray, rng: np.random.Generator, *, time_axis: int, freq_axis: int,
    time_masks: int, freq_masks: int, max_frac: float,
) -> np.ndarray:
    """Zero random time and frequency stripes of each example (SpecAugment masking).

    Inputs are standardised, so zero is the mean. Each mask's width is drawn uniformly
    from 0 to `max_frac` of the axis (at least 1 bin), its start uniformly.

    Parameters
    ----------
    x : np.ndarray [shape=(batch, ...)]
        A batch: (batch, mfcc_frames, n_mfcc) for the baseline, (batch, n_mels, frames, 3)
        for the deep model. Not modified.
    rng : np.random.Generator
        Draws the masks.
    time_axis, freq_axis : int
        The time and frequency axes of `x`, counting the batch axis (0).
    time_masks, freq_masks : int
        Masks per example along each axis (0: none).
    max_frac : float
        Widest mask, as a fraction of the axis's length.

    Returns
    -------
    np.ndarray [shape=x.shape, dtype=x.dtype]
        A masked copy of `x`.
    """
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
    generator avoids the per-epoch stall of `keras.utils.PyDataset`'s queue);
    ``len()`` is the number of batches in one pass.

    Parameters
    ----------
    x : np.ndarray [shape=(n, mfcc_frames, n_mfcc) or (n, n_mels, frames, 3), dtype=float32]
        Standardised inputs of the training clips (baseline or deep model).
    y : Targets
        Their targets, each of shape (n,).
    cfg : TrainConfig
        `batch_size`, `seed`, the SpecAugment masks (`time_masks`, `freq_masks`,
        `max_mask_frac`) and `mixup_alpha` (0: no mixup).
    time_axis, freq_axis : int
        The time and frequency axes of a batch of `x`, counting the batch axis.
    views : sequence of np.ndarray [shape=x.shape]
        Degraded copies of `x`, clip for clip.

    Raises
    ------
    ValueError
        If a view's shape is not that of `x`.

    Notes
    -----
    Batch ``i`` is ``(inputs, {"emotion": (b, 8), "intensity": (b, 2)})``: inputs of
    shape (b, ...) as `x`, targets float32 one-hot over `EMOTIONS` and `INTENSITIES`
    (mixed like the inputs under mixup); b is `cfg.batch_size`, less in the last batch.
    """

    def __init__(
        self, x: np.ndarray, y: Targets, cfg: TrainConfig, *, time_axis: int, freq_axis: int,
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
        time_axis, freq_axis = self.axes
        x = spec_augment(x, self.rng, time_axis=time_axis, freq_axis=freq_axis,
                         time_masks=c.time_masks, freq_masks=c.freq_masks, max_frac=c.max_mask_frac)
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
    """Adds `val_uar` (emotion recall averaged over classes) to each epoch's logs.

    Parameters
    ----------
    x : np.ndarray [shape=(n, ...)]
        Validation inputs, shaped as the model's training inputs.
    y : np.ndarray [shape=(n,), dtype=int]
        Their emotion class indices into `EMOTIONS`.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        """Score the validation clips and set ``logs["val_uar"]`` (Keras callback hook).

        Parameters
        ----------
        epoch : int
            Index of the epoch that ended (unused).
        logs : dict
            The epoch's logs, updated in place.
        """
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
    """Compile a CNN for training: Adam on a cosine-decayed learning rate, both heads' losses.

    Parameters
    ----------
    model : keras.Model
        From `ser_core.models.build_model`, outputs ``emotion`` and ``intensity``.
    cfg : TrainConfig
        `learning_rate`, `epochs`, `ema_momentum` (>0: Adam keeps a moving average of
        the weights), `label_smoothing` (emotion loss), `intensity_weight`.
    steps : int
        Batches per epoch; the learning rate decays over ``steps * cfg.epochs`` steps.
    """
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
    x: np.ndarray, y: Targets, *, val: tuple[np.ndarray, Targets] | None = None,
    verbose: int = 2, views: Sequence[np.ndarray] = (),
) -> tuple[keras.Model, pd.DataFrame]:
    """Train a CNN from scratch.

    With `val`, report validation metrics per epoch and (unless `cfg.patience` is 0)
    stop early on validation UAR, keeping the best epoch's weights. With
    `cfg.ema_momentum`, validation, early stopping and the returned model use the
    moving average of the weights (Polyak averaging), which smooths epoch-to-epoch swings.

    Parameters
    ----------
    model_cfg : ModelConfig
        The architecture; `kind` ``baseline`` takes MFCCs, ``deep`` the cube.
    feature_cfg : FeatureConfig
        The features `x` was extracted with (the model's input shape).
    cfg : TrainConfig
        Optimisation and augmentation (`AugmentedBatches`, `compile_model`), `seed`, `patience`.
    x : np.ndarray [shape=(n, mfcc_frames, n_mfcc) or (n, n_mels, frames, 3), dtype=float32]
        Training inputs: MFCCs for the baseline, the 3-channel cube for the deep model.
    y : Targets
        Their targets, each of shape (n,).
    val : tuple of (np.ndarray, Targets), optional
        Validation inputs (shaped as `x`) and targets; None or empty: no validation.
    verbose : int
        Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.
    views : sequence of np.ndarray [shape=x.shape]
        Degraded copies of `x`, sampled per example (see `AugmentedBatches`).

    Returns
    -------
    model : keras.Model
        The trained model.
    history : pd.DataFrame
        One row per epoch trained: ``epoch`` (from 1), then Keras's training losses and
        accuracies (``loss``, ``emotion_accuracy``, ...); with `val` also their ``val_``
        counterparts and ``val_uar``.

    Raises
    ------
    ValueError
        If a view's shape is not that of `x`.
    """
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(model_cfg, feature_cfg)
    time_axis, freq_axis = (1, 2) if model_cfg.kind == "baseline" else (2, 1)
    batches = AugmentedBatches(x, y, cfg, time_axis=time_axis, freq_axis=freq_axis, views=views)
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
    """Emotion and intensity probabilities of each input.

    Parameters
    ----------
    model : keras.Model
        A trained CNN (`fit`).
    x : np.ndarray [shape=(n, mfcc_frames, n_mfcc) or (n, n_mels, frames, 3), dtype=float32]
        Inputs of the model's kind.
    batch_size : int
        Inputs per forward pass.

    Returns
    -------
    emotion : np.ndarray [shape=(n, 8)]
        Probabilities over `EMOTIONS`.
    intensity : np.ndarray [shape=(n, 2)]
        Probabilities over `INTENSITIES`.
    """
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(out["emotion"]), np.asarray(out["intensity"])
