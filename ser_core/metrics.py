"""Evaluation metrics: accuracy, unweighted average recall (UAR), macro-F1, per class."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

from .labels import EMOTIONS


def unweighted_average_recall(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Mean of per-class recalls over the classes present in `y_true`.

    Parameters
    ----------
    y_true, y_pred : sequence of int [shape=(n,)]
        True and predicted class indices.

    Returns
    -------
    float
        UAR in [0, 1].
    """
    return float(recall_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str] = EMOTIONS
) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1 (both over the classes present), per-class scores and the
    confusion matrix (rows: true, columns: predicted, over all `labels`).

    Parameters
    ----------
    y_true, y_pred : sequence of int [shape=(n,)]
        True and predicted class indices into `labels`.
    labels : sequence of str
        Class names, by index.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``uar``, ``macro_f1`` (floats in [0, 1]), ``per_class``
        (name -> precision, recall, f1, support), ``labels`` and ``confusion_matrix``
        (list of lists [shape=(len(labels), len(labels))], counts).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    present = np.unique(y_true)
    idx = np.arange(len(labels))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uar": unweighted_average_recall(y_true, y_pred),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
    }


def report_text(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str] = EMOTIONS) -> str:
    """scikit-learn's text classification report over all `labels`, to 3 digits.

    Parameters
    ----------
    y_true, y_pred : sequence of int [shape=(n,)]
        True and predicted class indices into `labels`.
    labels : sequence of str
        Class names, by index.

    Returns
    -------
    str
    """
    return classification_report(
        y_true, y_pred, labels=np.arange(len(labels)), target_names=list(labels), digits=3, zero_division=0
    )


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation over folds, and how many there were.

    Parameters
    ----------
    values : sequence of float [shape=(n_folds,)]
        One figure per fold.

    Returns
    -------
    dict
        ``mean``, ``sd`` (ddof=1; 0.0 for a single fold) and ``n``.
    """
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
