"""Running a protocol on RAVDESS end to end and writing its reports."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import load_bundle, predict_files, save_bundle
from ..config import FeatureConfig, ModelConfig, TrainConfig, differing_configs
from ..evaluation import write_evaluation
from ..labels import EMOTIONS, INTENSITIES
from ..metrics import classification_metrics, summarize
from ..models import input_name
from ..plots import plot_curves
from .cnn import Targets, fit
from .cnn_features import extract_corpus
from .data import Split, all_split, fold_splits, ravdess_manifest, seed_split
from .views import View

PROTOCOLS = ("folds", "seed-split", "all")


def load_corpus(data_root: str | Path, channels: str = "speech") -> pd.DataFrame:
    """RAVDESS's manifest, restricted to one vocal channel.

    Parameters
    ----------
    data_root : path
        The data folder, or its ``ravdess/`` folder (`ravdess_manifest`).
    channels : str
        ``speech``, ``song`` or ``both``.

    Returns
    -------
    pd.DataFrame
        One row per clip, the manifest's columns (`download.MANIFEST_COLUMNS`: ``path``
        absolute, ``actor``, ``sex``, ``vocal_channel``, ``emotion``, ``intensity``,
        ``fold``, ...), index 0..n-1.
    """
    df = ravdess_manifest(data_root)
    if channels != "both":
        df = df[df["vocal_channel"] == channels]
    return df.reset_index(drop=True)


def targets(df: pd.DataFrame) -> Targets:
    """The CNN targets of a manifest's clips.

    Parameters
    ----------
    df : pd.DataFrame
        Clips with ``emotion`` (a name in `EMOTIONS`) and ``intensity`` (in `INTENSITIES`).

    Returns
    -------
    Targets
        Class indices, each of shape (len(df),).
    """
    return Targets(
        emotion=df["emotion"].map(EMOTIONS.index).to_numpy(),
        intensity=df["intensity"].map(INTENSITIES.index).to_numpy(),
    )


def training_views(train_cfg: TrainConfig) -> list[View]:
    """The degraded views `train_cfg` trains on besides the clean one.

    Parameters
    ----------
    train_cfg : TrainConfig
        Its `telephone_augment`, `noise_augment` and `codec_augment` flags.

    Returns
    -------
    list of View
        One single-step view per flag set, in that order (empty: clean audio only).
    """
    flags = {"telephone": train_cfg.telephone_augment, "noise": train_cfg.noise_augment,
             "codec": train_cfg.codec_augment}
    return [View(**{flag: True}) for flag, on in flags.items() if on]


def splits(df: pd.DataFrame, protocol: str, n_val: int, folds: list[int] | None = None) -> list[Split]:
    """The train/validation/test splits of a protocol.

    Parameters
    ----------
    df : pd.DataFrame
        The clips (`load_corpus`): ``path``, ``actor``, ``sex``, ``vocal_channel``, ``fold``.
    protocol : str
        One of `PROTOCOLS`: ``folds`` (each manifest fold held out in turn), ``seed-split``
        (`seed_split`) or ``all`` (every clip trains, nothing is tested).
    n_val : int
        Training actors held out for early stopping, per split.
    folds : list of int, optional
        ``folds``: only these folds run; ``all``: only the actors of these folds train.
        None: every fold.

    Returns
    -------
    list of Split
        Row positions into `df`.

    Raises
    ------
    ValueError
        If `protocol` is not one of `PROTOCOLS`.
    """
    if protocol == "folds":
        chosen = list(fold_splits(df, n_val))
        return [s for s in chosen if folds is None or int(s.name.split("_")[1]) in folds]
    if protocol == "seed-split":
        return [seed_split(df, n_val)]
    if protocol == "all":
        keep = np.ones(len(df), bool) if folds is None else df["fold"].isin(folds).to_numpy()
        return [all_split(df)._replace(train=np.flatnonzero(keep))]
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def _prediction_table(df: pd.DataFrame, split: Split, bundle_dir: Path, telephone: bool) -> pd.DataFrame:
    """The held-out clips of `split` scored by the split's saved bundle as `ser evaluate`
    scores them (`predict_files`: windows over the whole utterance, averaged); a clip that
    cannot be scored counts as wrong (`pred` empty)."""
    test = df.iloc[split.test]
    scored = predict_files(load_bundle(bundle_dir), list(test["path"]), telephone=telephone)
    pred = test[["path", "actor", "vocal_channel", "emotion", "intensity"]].rename(
        columns={"emotion": "true", "intensity": "true_intensity"}).reset_index(drop=True)
    pred.insert(0, "split", split.name)
    pred.insert(1, "condition", "telephone" if telephone else "clean")
    pred["pred"] = scored["label"].to_numpy()
    pred["pred_intensity"] = scored["intensity"].to_numpy()
    for e in EMOTIONS:
        pred[f"p_{e}"] = scored[e].to_numpy()
    unscored = scored["error"].notna().to_numpy()
    if unscored.any():  # extraction read these clips; scoring must too
        raise RuntimeError(f"{split.name}: {unscored.sum()} held-out clips could not be scored: "
                           + "; ".join(scored["error"][unscored].head(3)))
    return pred


def _scores(pred: pd.DataFrame) -> dict[str, Any]:
    """Headline figures on clean audio overall and per vocal channel, and on the
    telephone-channel copy of the test set when there is one (also per vocal channel,
    as `telephone_speech`, `telephone_song`)."""
    out: dict[str, Any] = {}
    groups = []
    for condition, g in pred.groupby("condition"):
        clean = condition == "clean"
        groups.append(("all" if clean else condition, g))
        prefix = "" if clean else f"{condition}_"
        if g["vocal_channel"].nunique() > 1:
            groups += [(f"{prefix}{channel}", gc) for channel, gc in g.groupby("vocal_channel")]
    for name, g in groups:
        m = classification_metrics(g["true"].map(EMOTIONS.index), g["pred"].map(EMOTIONS.index))
        out[name] = {k: m[k] for k in ("n", "accuracy", "uar", "macro_f1")}
        out[name]["intensity_accuracy"] = float((g["true_intensity"] == g["pred_intensity"]).mean())
    return out


def _config_differs(saved: dict[str, Any], config: dict[str, Any]) -> bool:
    others = [k for k in config if not k.endswith("_config")]
    return bool(differing_configs(saved, config)) or any(saved.get(k) != config[k] for k in others)


def run_protocol(
    data_root: str | Path,
    out_dir: str | Path,
    feature_cfg: FeatureConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    protocol: str = "folds",
    channels: str = "speech",
    folds: list[int] | None = None,
    command: str = "",
    verbose: int = 2,
    test_telephone: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and evaluate under `protocol`; write every report into `out_dir`.

    Each held-out split's model is saved as a bundle in its folder, and the held-out clips
    are scored by that bundle as `ser evaluate` scores them (`predict_files`); with
    `test_telephone` also through the telephone channel (`ser evaluate --telephone`,
    reported as the `telephone` group).

    `folds` and `seed-split` hold actors out for testing (`folds` restricts which folds
    run); `all` trains on every clip (of the actors of `folds`, if given) for
    `train_cfg.epochs` epochs and writes a model bundle to `out_dir/bundle`.

    With `resume`, held-out splits already finished in `out_dir` by a run with the same
    configuration are read back instead of trained again (a 6-fold run can span sessions).

    Parameters
    ----------
    data_root : path
        The data folder holding RAVDESS (`load_corpus`).
    out_dir : path
        Where the reports go: ``config.json``, ``command.txt``, ``metrics.json``,
        ``report.md``, ``predictions.csv`` and ``pooled*/``; per split a folder with
        ``history.csv``, ``curves.png``, ``bundle/`` and (held-out splits) ``fold.json``,
        ``predictions.csv`` and the evaluation figures.
    feature_cfg : FeatureConfig
        Feature extraction (cached by `extract_corpus`).
    model_cfg : ModelConfig
        The network.
    train_cfg : TrainConfig
        Optimisation, augmentation and training views (`training_views`), `val_actors`.
    protocol : str
        One of `PROTOCOLS` (see `splits`).
    channels : str
        RAVDESS vocal channel: ``speech``, ``song`` or ``both``.
    folds : list of int, optional
        Restricts the folds (see `splits`).
    command : str
        The command line, recorded in ``command.txt`` and the bundles.
    verbose : int
        Keras verbosity (0 silent, 2 one line per epoch).
    test_telephone : bool
        Also score the held-out clips through the telephone channel.
    resume : bool
        Reuse splits already finished in `out_dir`.

    Returns
    -------
    dict
        What ``metrics.json`` holds: ``protocol``, ``channels``, ``model``, ``n_clips``,
        ``unusable_clips``, ``folds`` (split name -> its figures), ``wall_seconds``,
        ``train_seconds``; with held-out splits also ``pooled`` (figures over all test
        clips) and ``mean`` (mean and sd over splits), per group (``all``, ``speech``,
        ``song``, ``telephone``, ...).

    Raises
    ------
    ValueError
        If `protocol` is unknown, or `resume` finds `out_dir` run with another configuration.
    RuntimeError
        If a held-out clip that extraction read cannot be scored by its split's bundle.
    """
    t0 = time.time()
    df = load_corpus(data_root, channels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "feature_config": feature_cfg.to_dict(), "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(), "protocol": protocol, "channels": channels,
        "test_telephone": test_telephone,
    }
    config_file = out / "config.json"
    if resume and config_file.exists() and _config_differs(json.loads(config_file.read_text()), config):
        raise ValueError(f"cannot resume {out}: it was run with another configuration (see {config_file})")
    config_file.write_text(json.dumps(config, indent=2))
    with open(out / "command.txt", "a" if resume else "w") as f:
        f.write(command + "\n")
    feats = extract_corpus(df["path"], feature_cfg)
    usable = np.setdiff1d(np.arange(len(df)), list(feats.errors))
    name = input_name(model_cfg)
    x_all = getattr(feats, name)[usable]
    # degraded training views, aligned with x_all
    x_augmented = [getattr(extract_corpus(df["path"], feature_cfg, view=v), name)[usable]
                   for v in training_views(train_cfg)]
    df = df.iloc[usable].reset_index(drop=True)
    y_all = targets(df)
    n_val = 0 if protocol == "all" else train_cfg.val_actors
    results: dict[str, Any] = {"protocol": protocol, "channels": channels, "model": model_cfg.kind,
                               "n_clips": len(df), "unusable_clips": len(feats.errors), "folds": {}}
    predictions = []
    for split in splits(df, protocol, n_val, folds):
        fold_dir = out / split.name
        if resume and (fold_dir / "fold.json").exists() and (fold_dir / "predictions.csv").exists():
            pred = pd.read_csv(fold_dir / "predictions.csv")
            # scored again from its predictions, so a finished split gains figures added since it ran
            results["folds"][split.name] = {**json.loads((fold_dir / "fold.json").read_text()), **_scores(pred)}
            predictions.append(pred)
            continue
        fold_t0 = time.time()
        val = (x_all[split.val], y_all.take(split.val)) if len(split.val) else None
        x_train = x_all[split.train]
        model, history = fit(model_cfg, feature_cfg, train_cfg, x_train, y_all.take(split.train), val=val,
                             verbose=verbose, views=[xa[split.train] for xa in x_augmented])
        fold_dir.mkdir(exist_ok=True)
        history.to_csv(fold_dir / "history.csv", index=False)
        plot_curves(history, fold_dir / "curves.png")
        fold_info = {"train_clips": len(x_train), "train_views": 1 + len(x_augmented),
                     "val_clips": len(split.val), "test_clips": len(split.test),
                     "epochs": len(history), "train_seconds": round(time.time() - fold_t0, 1)}
        if "val_uar" in history:
            fold_info["best_epoch"] = int(history["val_uar"].idxmax()) + 1
        if protocol == "all":
            trained_on = {"channels": channels, "actors": sorted(int(a) for a in set(df["actor"].iloc[split.train])),
                          "clips": len(split.train)}
            save_bundle(out / "bundle", model, feature_cfg=feature_cfg, model_cfg=model_cfg, train_cfg=train_cfg,
                        info={"training_command": command, "trained_on": trained_on})
            results["folds"][split.name] = fold_info
            continue
        save_bundle(fold_dir / "bundle", model, feature_cfg=feature_cfg, model_cfg=model_cfg, train_cfg=train_cfg,
                    info={"training_command": command, "test_actors": sorted(int(a) for a in set(df["actor"].iloc[split.test]))})
        pred = pd.concat([_prediction_table(df, split, fold_dir / "bundle", telephone)
                          for telephone in ((False, True) if test_telephone else (False,))], ignore_index=True)
        pred.to_csv(fold_dir / "predictions.csv", index=False)
        clean = pred[pred["condition"] == "clean"]
        write_evaluation(fold_dir, clean["true"].map(EMOTIONS.index), clean["pred"].map(EMOTIONS.index))
        fold_info.update(_scores(pred))
        (fold_dir / "fold.json").write_text(json.dumps(fold_info, indent=2))
        results["folds"][split.name] = fold_info
        predictions.append(pred)
    if predictions:
        pooled = pd.concat(predictions, ignore_index=True)
        pooled.to_csv(out / "predictions.csv", index=False)
        for condition, group in pooled.groupby("condition"):
            write_evaluation(out / ("pooled" if condition == "clean" else f"pooled_{condition}"),
                             group["true"].map(EMOTIONS.index), group["pred"].map(EMOTIONS.index))
        results["pooled"] = _scores(pooled)
        per_fold = list(results["folds"].values())
        results["mean"] = {
            group: {k: summarize([f[group][k] for f in per_fold if group in f])
                    for k in ("accuracy", "uar", "macro_f1", "intensity_accuracy")}
            for group in results["pooled"]
        }
    results["wall_seconds"] = round(time.time() - t0, 1)  # this invocation
    results["train_seconds"] = round(sum(f["train_seconds"] for f in results["folds"].values()), 1)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(render_report(results, (out / "command.txt").read_text().splitlines()))
    return results


def render_report(results: dict[str, Any], commands: list[str]) -> str:
    """A short Markdown summary linking every figure of the run.

    Parameters
    ----------
    results : dict
        `run_protocol`'s results.
    commands : list of str
        The command lines of the run (more than one for a resumed run).

    Returns
    -------
    str
        The Markdown text of ``report.md``.
    """
    lines = [f"# {results['model']} model, protocol `{results['protocol']}`, {results['channels']}", "",
             "Command" + ("s (a resumed run)" if len(commands) > 1 else "") + ": "
             + " then ".join(f"`{c}`" for c in commands),
             "", f"Clips: {results['n_clips']} (unusable: {results['unusable_clips']}); "
             f"training {results['train_seconds'] / 60:.1f} min in all; "
             f"this invocation {results['wall_seconds'] / 60:.1f} min.", ""]
    if "mean" in results:
        lines += ["| subset | accuracy | UAR | macro-F1 | intensity acc. |", "|---|---|---|---|---|"]
        for group, m in results["mean"].items():
            cells = " | ".join(f"{m[k]['mean']:.3f} ± {m[k]['sd']:.3f}"
                               for k in ("accuracy", "uar", "macro_f1", "intensity_accuracy"))
            lines.append(f"| {group} (mean ± sd over splits) | {cells} |")
        lines += ["", "Pooled over all test clips: [report](pooled/classification_report.txt), "
                  "[confusion](pooled/confusion_matrix.png), [normalised](pooled/confusion_matrix_normalized.png)", ""]
    lines += ["| split | epochs | train s | UAR | accuracy | macro-F1 | figures |", "|---|---|---|---|---|---|---|"]
    for name, f in results["folds"].items():
        a = f.get("all", {})
        score = " | ".join(f"{a[k]:.3f}" if k in a else "–" for k in ("uar", "accuracy", "macro_f1"))
        lines.append(f"| {name} | {f['epochs']} | {f['train_seconds']} | {score} | [curves]({name}/curves.png) "
                     f"[history]({name}/history.csv) [confusion]({name}/confusion_matrix.png) |")
    return "\n".join(lines) + "\n"
