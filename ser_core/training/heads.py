"""Training the emotion head on cached encoder states, and its evaluation protocols.

Protocols (all speaker-independent):

- ``folds``: the speaker folds of `test_corpus` are held out in turn; each fold's head
  trains on the other folds and on every clip of the other `corpora`.
- ``cross``: the head trains on `corpora` and is tested on every clip of `test_corpus`
  (a corpus it never heard).
- ``all``: one head on every clip of `corpora`, saved as a bundle.

Every split's head is saved as a bundle in its folder (`ser evaluate` reproduces its figures).

A held-out clip is scored by `ser_core.scoring.predict_states` (as the product scores),
with the argmax taken over the classes the test corpus has and the training corpora know; the
test clips of other classes are left out (e.g. RAVDESS's calm and surprised, for a head
trained on CREMA-D alone).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from ..config import _JsonConfig
from ..encoder_bundle import save_encoder_bundle
from ..head import HeadConfig, build_head, masked_emotion_loss, masked_intensity_loss
from ..labels import EMOTIONS, INTENSITIES
from ..metrics import classification_metrics, summarize
from ..scoring import pad_batch, predict_states
from .corpora import CLASSES, class_mask, credits, load_corpora
from .states import corpus_states, load_states, prep_config
from .views import View

PROTOCOLS = ("folds", "cross", "all")
VIEWS: dict[str, View] = {"clean": View(), "telephone": View(telephone=True), "noise": View(noise=True),
                          "codec": View(codec=True)}


@dataclass(frozen=True)
class HeadTrainConfig(_JsonConfig):
    """Optimisation of the head and the degraded views it trains on."""

    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    intensity_weight: float = 0.3
    max_frames: int = 300           # training crops: at most 6 s of a clip
    crop_prob: float = 0.5          # share of clips cut to a random stretch of at least `crop_min_frames`
    crop_min_frames: int = 50       # (1 s: the job scores turns as short as 0.3 s)
    views: tuple[str, ...] = ("clean", "telephone")  # each epoch, each clip in one view drawn at random
    seed: int = 0


class StateBatches:
    """Batches of cached states: each epoch, each clip in one of its views (drawn at random),
    a random crop of at most `max_frames`, clips of similar length batched together.

    Parameters
    ----------
    views : list of list of np.ndarray [shape=(layers, frames_i, width)]
        One list per view, each aligned clip for clip: the encoder states of each clip
        (float16 memory maps, `load_states`); frames at 50 per second.
    y_emotion : np.ndarray [shape=(n, 16), dtype=float32]
        One-hot emotion and class mask (`targets`).
    y_intensity : np.ndarray [shape=(n, 3), dtype=float32]
        One-hot intensity and whether it is known (`targets`).
    cfg : HeadTrainConfig
        `batch_size`, `max_frames`, `crop_prob`, `crop_min_frames`, `seed`.
    """

    def __init__(self, views: list[list[np.ndarray]], y_emotion: np.ndarray, y_intensity: np.ndarray,
                 cfg: HeadTrainConfig):
        self.views, self.y_emotion, self.y_intensity, self.cfg = views, y_emotion, y_intensity, cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.lengths = np.array([min(s.shape[1], cfg.max_frames) for s in views[0]])
        n, b = len(self.lengths), cfg.batch_size
        self.n_chunks = max(1, n // (20 * b))
        self.n_batches = sum(max(1, int(np.ceil(len(c) / b))) for c in np.array_split(np.arange(n), self.n_chunks))

    def __len__(self) -> int:
        return self.n_batches

    def epoch(self):
        """One pass: (inputs, targets) per batch, in random order.

        Yields
        ------
        inputs : dict of str to np.ndarray
            ``states`` [shape=(b, layers, t, width), dtype=float32], zero-padded, and
            ``mask`` [shape=(b, t), dtype=float32], 1 on real frames (`pad_batch`: t is the
            longest crop rounded up to a multiple of 25).
        targets : dict of str to np.ndarray
            ``emotion`` [shape=(b, 16)] and ``intensity`` [shape=(b, 3)], rows of `y_emotion`
            and `y_intensity`.
        """
        n, b = len(self.lengths), self.cfg.batch_size
        order = self.rng.permutation(n)
        # sort within chunks of about 20 batches: similar lengths together, order still random
        chunks = [c[np.argsort(self.lengths[c], kind="stable")] for c in np.array_split(order, self.n_chunks)]
        batches = [idx for c in chunks for idx in np.array_split(c, max(1, int(np.ceil(len(c) / b))))]
        view_of = self.rng.integers(len(self.views), size=n)
        for k in self.rng.permutation(len(batches)):
            idx = batches[k]
            crops = []
            for j in idx:
                s = self.views[view_of[j]][j]
                t = s.shape[1]
                length = min(t, self.cfg.max_frames)
                if self.cfg.crop_min_frames < length and self.rng.random() < self.cfg.crop_prob:
                    length = int(self.rng.integers(self.cfg.crop_min_frames, length + 1))
                start = int(self.rng.integers(t - length + 1))
                crops.append(np.asarray(s[:, start:start + length], np.float32))
            yield pad_batch(crops), {"emotion": self.y_emotion[idx], "intensity": self.y_intensity[idx]}

    def dataset(self):
        """A `tf.data.Dataset` of one epoch (re-drawn each time it is iterated), any frame count.

        Returns
        -------
        tf.data.Dataset
            The batches of `epoch`, float32, prefetched two ahead.
        """
        import tensorflow as tf

        n_layers, _, width = self.views[0][0].shape
        signature = ({"states": tf.TensorSpec((None, n_layers, None, width), tf.float32),
                      "mask": tf.TensorSpec((None, None), tf.float32)},
                     {"emotion": tf.TensorSpec((None, self.y_emotion.shape[1]), tf.float32),
                      "intensity": tf.TensorSpec((None, self.y_intensity.shape[1]), tf.float32)})
        return tf.data.Dataset.from_generator(self.epoch, output_signature=signature).prefetch(2)


def targets(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The losses' targets: (n, 16) one-hot emotion + class mask; (n, 3) one-hot intensity + known.

    Parameters
    ----------
    df : pd.DataFrame
        Clips in the common table (`load_corpora`): ``emotion``, ``intensity`` (empty where
        the corpus does not say), ``corpus``.

    Returns
    -------
    emotion : np.ndarray [shape=(n, 16), dtype=float32]
        Columns 0-7 one-hot over `EMOTIONS`, columns 8-15 the clip's `class_mask`.
    intensity : np.ndarray [shape=(n, 3), dtype=float32]
        Columns 0-1 one-hot over `INTENSITIES` (zero where unknown), column 2 1 where known.
    """
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)[df["emotion"].map(EMOTIONS.index).to_numpy()]
    known = df["intensity"].isin(INTENSITIES).to_numpy()
    inten = np.zeros((len(df), 3), np.float32)
    inten[known, :2] = np.eye(2, dtype=np.float32)[df["intensity"][known].map(INTENSITIES.index).to_numpy()]
    inten[:, 2] = known
    return np.concatenate([onehot, class_mask(df["corpus"].tolist())], axis=1), inten


def unit_statistics(states: list[np.ndarray], seed: int = 0, clips: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (layers, width) of every unit over the frames of up to `clips` clips.

    Parameters
    ----------
    states : list of np.ndarray [shape=(layers, frames_i, width)]
        Encoder states per clip.
    seed : int
        Picks the clips when there are more than `clips`.
    clips : int
        At most this many clips are read.

    Returns
    -------
    mean, variance : np.ndarray [shape=(layers, width), dtype=float32]
        Per unit over all frames of the clips read; variance at least 1e-6.
    """
    pick = np.random.default_rng(seed).permutation(len(states))[:clips]
    total = squares = 0.0
    for i in pick:  # one read of each clip
        x = np.asarray(states[i], np.float64)
        total, squares = total + x.sum(axis=1), squares + np.square(x).sum(axis=1)
    n = sum(states[i].shape[1] for i in pick)
    mean = total / n
    return mean.astype(np.float32), np.maximum(squares / n - mean**2, 1e-6).astype(np.float32)


def fit_head(head_cfg: HeadConfig, cfg: HeadTrainConfig, views: list[list[np.ndarray]], df: pd.DataFrame,
             verbose: int = 2) -> tuple[keras.Model, pd.DataFrame]:
    """Train a head on the states of `df`'s clips (one list per view, aligned with `df`).

    Parameters
    ----------
    head_cfg : HeadConfig
        The head's architecture.
    cfg : HeadTrainConfig
        Optimisation and crops (`StateBatches`).
    views : list of list of np.ndarray [shape=(layers, frames_i, width)]
        Per view in `cfg.views`, the encoder states of each clip of `df`.
    df : pd.DataFrame
        The clips (`targets`): ``emotion``, ``intensity``, ``corpus``.
    verbose : int
        Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.

    Returns
    -------
    head : keras.Model
        The trained head (`ser_core.head.build_head`), units standardised by `unit_statistics`
        of the first view.
    history : pd.DataFrame
        One row per epoch: Keras's training losses (``loss``, ``emotion_loss``, ...).
    """
    keras.utils.set_random_seed(cfg.seed)
    n_layers, _, width = views[0][0].shape
    head = build_head(head_cfg, n_layers, width, *unit_statistics(views[0], cfg.seed))
    batches = StateBatches(views, *targets(df), cfg)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=cfg.epochs * len(batches),
                                                      warmup_target=None, alpha=0.02)
    head.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
                 loss={"emotion": masked_emotion_loss(cfg.label_smoothing), "intensity": masked_intensity_loss},
                 loss_weights={"emotion": 1.0, "intensity": cfg.intensity_weight})
    history = head.fit(batches.dataset(), epochs=cfg.epochs, verbose=verbose)
    return head, pd.DataFrame(history.history)


def allowed_classes(test_corpus: str, train_corpora: list[str]) -> list[str]:
    """Classes a test corpus's figures are computed over: those it has that training knew.

    Parameters
    ----------
    test_corpus : str
        A key of `CLASSES`.
    train_corpora : list of str
        The corpora the head trained on.

    Returns
    -------
    list of str
        Class names, in `EMOTIONS` order.
    """
    known = {e for c in train_corpora for e in CLASSES[c]}
    return [e for e in EMOTIONS if e in CLASSES[test_corpus] and e in known]


def restricted_argmax(emo: np.ndarray, classes: list[str]) -> np.ndarray:
    """The most probable class of each clip among `classes`.

    Parameters
    ----------
    emo : np.ndarray [shape=(n, 8)]
        Emotion probabilities over `EMOTIONS`.
    classes : list of str
        The classes allowed (`allowed_classes`).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=int]
        Indices into `EMOTIONS`.
    """
    idx = np.array([EMOTIONS.index(e) for e in classes])
    return idx[emo[:, idx].argmax(axis=1)]


def scores(pred: pd.DataFrame) -> dict[str, Any]:
    """Headline figures of a prediction table.

    Parameters
    ----------
    pred : pd.DataFrame
        Columns ``true`` and ``pred`` (the argmax over the scored classes) and ``pred_all``
        (over all of `EMOTIONS`, as the job labels): class names.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``uar``, ``macro_f1`` (`classification_metrics`, of ``pred``);
        ``uar_all_classes``, the UAR of ``pred_all``, and ``outside_classes``, the share of
        clips whose ``pred_all`` is a class ``pred`` could not choose.
    """
    m = classification_metrics(pred["true"].map(EMOTIONS.index), pred["pred"].map(EMOTIONS.index))
    every = classification_metrics(pred["true"].map(EMOTIONS.index), pred["pred_all"].map(EMOTIONS.index))
    return {**{k: m[k] for k in ("n", "accuracy", "uar", "macro_f1")}, "uar_all_classes": every["uar"],
            "outside_classes": float((pred["pred_all"] != pred["pred"]).mean())}


def _states_for(df: pd.DataFrame, head_cfg: HeadConfig, views: list[str]) -> tuple[dict[str, list], np.ndarray]:
    """Cached states (of the head's encoder at its precision) of every clip in each view, and
    the positions usable in all views."""
    prep = prep_config()
    files: dict[str, list] = {}
    bad: set[int] = set()
    for v in views:
        files[v], errors = corpus_states(list(df["path"]), head_cfg.encoder, prep, precision=head_cfg.encoder_precision,
                                         view=VIEWS[v])
        bad |= set(errors)
    return files, np.setdiff1d(np.arange(len(df)), sorted(bad))


def run_head_protocol(
    data_root: str | Path, out_dir: str | Path, head_cfg: HeadConfig, cfg: HeadTrainConfig, *,
    corpora: tuple[str, ...] = ("ravdess", "crema_d"), protocol: str = "folds", test_corpus: str | None = None,
    folds: list[int] | None = None, test_telephone: bool = True, command: str = "", verbose: int = 2,
) -> dict[str, Any]:
    """Train and evaluate the head under `protocol`; reports and bundles into `out_dir`.

    Parameters
    ----------
    data_root : path
        The data folder holding the corpora (`load_corpora`).
    out_dir : path
        Where the reports go: ``config.json``, ``metrics.json``, ``predictions.csv``; per
        split a folder with ``history.csv``, ``fold.json`` and ``bundle/`` (protocol ``all``:
        the bundle is ``out_dir/bundle``).
    head_cfg : HeadConfig
        The head, and the encoder whose cached states it trains on (`corpus_states`).
    cfg : HeadTrainConfig
        Optimisation and the training views.
    corpora : tuple of str
        Training corpora, keys of `CORPORA`.
    protocol : str
        One of `PROTOCOLS` (see the module docstring).
    test_corpus : str, optional
        The corpus held out: among `corpora` for ``folds``, not among them for ``cross``.
    folds : list of int, optional
        Protocol ``folds`` only: which of `test_corpus`'s folds to hold out (default: each).
    test_telephone : bool
        Also score the held-out clips through the telephone channel (not for ``all``).
    command : str
        The command line, recorded in ``config.json`` and the bundles.
    verbose : int
        Keras verbosity; nonzero also prints each split's figures.

    Returns
    -------
    dict
        What ``metrics.json`` holds: ``protocol``, ``corpora``, ``test_corpus``, ``classes``
        (those scored, `allowed_classes`), ``n_clips``, ``unusable_clips``, ``folds`` (split
        name -> its figures per condition), ``wall_seconds``; with test clips also
        ``pooled`` and ``mean`` (mean and sd over splits), per condition (``clean``,
        ``telephone``).

    Raises
    ------
    ValueError
        If `protocol` is unknown, `test_corpus` does not fit it, or `folds` are given for
        another protocol or are not folds of `test_corpus`.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if protocol == "cross" and (test_corpus is None or test_corpus in corpora):
        raise ValueError("--protocol cross needs a --test-corpus that is not among --corpora")
    if protocol == "folds" and test_corpus not in corpora:
        raise ValueError("--protocol folds needs a --test-corpus among --corpora")
    if folds and protocol != "folds":
        raise ValueError(f"--folds selects held-out folds of --protocol folds, not of {protocol}")
    t0 = time.time()
    names = list(dict.fromkeys([*corpora, *([test_corpus] if test_corpus else [])]))
    df = load_corpora(data_root, names)
    conditions = ["clean"] + (["telephone"] if test_telephone and protocol != "all" else [])
    files, usable = _states_for(df, head_cfg, list(dict.fromkeys([*cfg.views, *conditions])))
    df = df.iloc[usable].reset_index(drop=True)
    states = {v: load_states([files[v][i] for i in usable]) for v in files}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"head_config": head_cfg.to_dict(), "train_config": cfg.to_dict(), "corpora": list(corpora),
              "protocol": protocol, "test_corpus": test_corpus, "folds": folds, "command": command}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    in_train = df["corpus"].isin(corpora).to_numpy()
    if protocol == "all":
        splits = [("all", np.flatnonzero(in_train), np.zeros(0, int))]
    elif protocol == "cross":
        splits = [(f"cross_{test_corpus}", np.flatnonzero(in_train), np.flatnonzero(df["corpus"] == test_corpus))]
    else:
        is_test = (df["corpus"] == test_corpus).to_numpy()
        known = sorted(int(f) for f in df.loc[is_test, "fold"].unique())
        if set(folds or known) - set(known):
            raise ValueError(f"--folds {sorted(set(folds) - set(known))}: {test_corpus}'s folds are {known}")
        splits = [(f"fold_{f}", np.flatnonzero(in_train & ~(is_test & (df["fold"] == f))),
                   np.flatnonzero(is_test & (df["fold"] == f))) for f in sorted(folds or known)]
    classes = allowed_classes(test_corpus, list(corpora)) if test_corpus else list(EMOTIONS)
    scored = df["emotion"].isin(classes).to_numpy()  # test clips of classes training never saw are left out
    splits = [(name, train, test[scored[test]]) for name, train, test in splits]
    results: dict[str, Any] = {"protocol": protocol, "corpora": list(corpora), "test_corpus": test_corpus,
                               "classes": classes, "n_clips": len(df),
                               "unusable_clips": int(len(files[cfg.views[0]]) - len(usable)), "folds": {}}
    predictions = []
    for name, train, test in splits:
        fold_t0 = time.time()
        train_df = df.iloc[train].reset_index(drop=True)
        head, history = fit_head(head_cfg, cfg, [[states[v][i] for i in train] for v in cfg.views], train_df, verbose)
        fold_dir = out / name
        fold_dir.mkdir(exist_ok=True)
        history.to_csv(fold_dir / "history.csv", index=False)
        info = {"train_clips": len(train), "test_clips": len(test), "train_seconds": round(time.time() - fold_t0, 1),
                "test_speakers": sorted(set(df["speaker"].iloc[test]))}
        save_encoder_bundle(out / "bundle" if protocol == "all" else fold_dir / "bundle", head, head_cfg=head_cfg,
                            train_cfg=cfg, prep=prep_config(),
                            info={"training_command": command, "trained_on": credits(list(corpora)),
                                  "trained_clips": len(train), "speakers": int(train_df["speaker"].nunique()),
                                  **({"test_speakers": info["test_speakers"]} if len(test) else {})})
        for condition in conditions if len(test) else []:
            emo, _ = predict_states(head, [states[condition][i] for i in test])
            pred = df.iloc[test][["path", "corpus", "speaker", "emotion"]].rename(columns={"emotion": "true"})
            pred.insert(0, "split", name)
            pred.insert(1, "condition", condition)
            pred["pred"] = [EMOTIONS[j] for j in restricted_argmax(emo, classes)]
            pred["pred_all"] = [EMOTIONS[j] for j in emo.argmax(axis=1)]
            for j, e in enumerate(EMOTIONS):
                pred[f"p_{e}"] = emo[:, j]
            predictions.append(pred)
            info[condition] = scores(pred)
        (fold_dir / "fold.json").write_text(json.dumps(info, indent=2))
        results["folds"][name] = info
        if verbose:
            print(name, json.dumps({c: info[c] for c in conditions if c in info}), flush=True)
    if predictions:
        pooled = pd.concat(predictions, ignore_index=True)
        pooled.to_csv(out / "predictions.csv", index=False)
        results["pooled"] = {c: scores(g) for c, g in pooled.groupby("condition")}
        per_fold = list(results["folds"].values())
        results["mean"] = {c: {k: summarize([f[c][k] for f in per_fold])
                               for k in ("accuracy", "uar", "macro_f1", "uar_all_classes", "outside_classes")}
                           for c in conditions}
    results["wall_seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    return results
