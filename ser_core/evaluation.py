"""Scoring labelled files: the manifests `ser evaluate` and `ser predict` read, and the
metrics and figures `ser evaluate` (and each held-out split of training) writes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .labels import EMOTIONS
from .metrics import classification_metrics, report_text


def read_labelled_manifest(csv: str | Path) -> pd.DataFrame:
    """A `path[,label]` CSV (other columns are kept); relative paths are taken relative to the CSV's folder.
    A corpus manifest (RAVDESS's, CREMA-D's) reads as one: its `emotion` column is the label.

    Parameters
    ----------
    csv : str or Path
        The manifest.

    Returns
    -------
    pandas.DataFrame
        One row per file, ``path`` absolute, ``label`` (if any) one of `EMOTIONS`.

    Raises
    ------
    ValueError
        No ``path`` column, or a label outside `EMOTIONS`.
    """
    csv = Path(csv)
    df = pd.read_csv(csv)
    if "path" not in df.columns:
        raise ValueError(f"{csv} has no 'path' column")
    if "label" not in df.columns and "emotion" in df.columns:
        df = df.rename(columns={"emotion": "label"})
    df["path"] = [str(p if Path(p).is_absolute() else (csv.parent / p).resolve()) for p in df["path"]]
    if "label" in df.columns:
        bad = sorted(set(df["label"]) - set(EMOTIONS))
        if bad:
            raise ValueError(f"{csv}: unknown labels {bad}; expected one of {EMOTIONS}")
    return df


def write_evaluation(out: Path, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Write metrics.json, classification_report.txt and both confusion-matrix PNGs.

    Parameters
    ----------
    out : Path
        Folder to write into (created).
    y_true, y_pred : array_like of int [shape=(n,)]
        True and predicted class indices into `EMOTIONS`.

    Returns
    -------
    dict
        The metrics (`classification_metrics`).
    """
    from .plots import plot_confusion  # matplotlib, for this alone (`ser predict` reads manifests without it)

    out.mkdir(parents=True, exist_ok=True)
    m = classification_metrics(y_true, y_pred)
    (out / "metrics.json").write_text(json.dumps(m, indent=2))
    (out / "classification_report.txt").write_text(report_text(y_true, y_pred))
    plot_confusion(m["confusion_matrix"], EMOTIONS, out / "confusion_matrix.png", normalize=False)
    plot_confusion(m["confusion_matrix"], EMOTIONS, out / "confusion_matrix_normalized.png", normalize=True)
    return m
