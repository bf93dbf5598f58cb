"""Scoring encoder states with an emotion head: the one path that `ser predict`,
`ser evaluate`, the nightly job and cross-validation share.

States of any lengths are grouped by length, padded to a multiple of `BUCKET` frames
(few distinct shapes, so the graph is traced few times) and masked: the head ignores the
padding exactly (`ser_core.head`), so a clip scores the same alone or in a batch.
"""
from __future__ import annotations

import weakref
from collections.abc import Sequence

import keras
import numpy as np

BUCKET = 25  # frames (0.5 s of encoder frames at 50 per second)
_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _runner(head: keras.Model):
    """The head as one traced function for any batch and frame count (cached per head):
    called eagerly, each of its small ops is dispatched on its own, which costs more than
    the arithmetic on a call's short segments."""
    fn = _RUNNERS.get(head)
    if fn is None:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            _, n_layers, _, width = head.input["states"].shape
            fn = tf.function(lambda states, mask: head({"states": states, "mask": mask}, training=False),
                             input_signature=[tf.TensorSpec((None, n_layers, None, width), tf.float32),
                                              tf.TensorSpec((None, None), tf.float32)])
        else:  # pragma: no cover - the product runs on TensorFlow
            def fn(states, mask):
                return head({"states": states, "mask": mask}, training=False)
        _RUNNERS[head] = fn
    return fn


def pad_batch(states: Sequence[np.ndarray], frames: int | None = None) -> dict[str, np.ndarray]:
    """Stack states of several lengths into the head's inputs.

    Parameters
    ----------
    states : sequence of np.ndarray [shape=(n_layers, t_i, width)], float32
        One per clip or segment.
    frames : int, optional
        Padded length; longer states are cut to it. Default: the longest, rounded up to a
        multiple of `BUCKET`.

    Returns
    -------
    dict
        ``states`` [shape=(len(states), n_layers, frames, width)], zero-padded, and ``mask``
        [shape=(len(states), frames)], 1.0 on real frames and 0.0 on padding.
    """
    longest = max(s.shape[1] for s in states)
    frames = frames or int(np.ceil(longest / BUCKET) * BUCKET)
    n_layers, _, width = states[0].shape
    x = np.zeros((len(states), n_layers, frames, width), np.float32)
    mask = np.zeros((len(states), frames), np.float32)
    for i, s in enumerate(states):
        t = min(s.shape[1], frames)
        x[i, :, :t] = s[:, :t]
        mask[i, :t] = 1.0
    return {"states": x, "mask": mask}


def predict_states(head: keras.Model, states: Sequence[np.ndarray], batch_frames: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """Emotion (n, 8) and intensity (n, 2) probabilities of each clip's encoder states.

    Parameters
    ----------
    head : keras.Model
        An emotion head (`ser_core.head.build_head`).
    states : sequence of np.ndarray [shape=(n_layers, frames_i, width)], float32
        One per clip or segment, of any lengths.
    batch_frames : int
        Frames per batch (batch size times padded length): bounds memory.

    Returns
    -------
    emotion : np.ndarray [shape=(len(states), n_emotions)], float32
    intensity : np.ndarray [shape=(len(states), n_intensities)], float32
        Probabilities, in the order of `states`; each clip scores the same alone or in a batch.
    """
    n = len(states)
    emo = np.zeros((n, head.output["emotion"].shape[-1]), np.float32)
    inten = np.zeros((n, head.output["intensity"].shape[-1]), np.float32)
    order = np.argsort([s.shape[1] for s in states], kind="stable")
    start = 0
    while start < n:
        frames = int(np.ceil(states[order[start]].shape[1] / BUCKET) * BUCKET)
        stop = start + 1
        while stop < n and states[order[stop]].shape[1] <= frames and (stop - start + 1) * frames <= batch_frames:
            stop += 1
        idx = order[start:stop]
        batch = pad_batch([states[i] for i in idx], frames)
        out = _runner(head)(batch["states"], batch["mask"])
        emo[idx], inten[idx] = np.asarray(out["emotion"]), np.asarray(out["intensity"])
        start = stop
    return emo, inten
