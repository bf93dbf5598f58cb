"""Held-out accuracy of the speaker-normalised prosody model, alone and averaged with a CNN run.

    python benchmarks/speaker_prosody.py docs/runs/gpu_jax_s13/NAME [docs/runs/OTHER ...]
        [--group-size 30] [--reps 5] [--weight 0.5] [--folds 1,2]

6-fold speaker-independent protocol of the RAVDESS manifest. For each fold, a `ProsodyModel`
is fitted on the training actors' speech and song, clean and through the telephone channel
(`View(telephone=True)`, as the CNN recipe [J] trains), each actor's clips standardised over
that actor, vocal channel and view. Held-out speech is scored clean and through the
telephone channel with the statistics of a group of clips, as the nightly job has them
for one side of a call:

- `actor`: all 60 clips of the actor (balanced over the emotions: optimistic);
- `random`: random groups of `--group-size` clips of one actor;
- `skewed`: such a group, its statistics taken with as many extra neutral and calm clips of
  the same actor (a call side that is mostly calm speech);
- `two`: such a group, its statistics taken with as many clips of another held-out actor
  (a mono recording, two talkers on one channel);
- `uniform`: all clips of one actor in one emotion (a call side in one mood throughout);
- `mostly`: such a group, its statistics taken with as many clips of the actor in one
  emotion drawn at random (a call side mostly in that mood), drawn with replacement.

With `--call-like-training`, the model is instead fitted on the training actors' clips
grouped in every way a call side may group them (whole actor, random groups of 30 and 8,
mostly one mood, one mood throughout), each group standardised over itself, with the
functionals themselves beside their standardised form, so that it can fall back on
absolute levels where standardisation erased them (regularisation fixed at C = 0.01).

With `--no-speaker-statistics`, the control: the model is fitted on the functionals as
they are, and scores each clip alone (printed as the `actor` grouping).

The runs named are CNN cross-validation runs (`ser train --protocol folds`) whose
`predictions.csv[.gz]` holds the held-out probabilities (first windows); several are
averaged first (a bundle with its wideband companion). Prints UAR per condition, grouping
and fold for the run, the prosody model and the two averaged with `--weight` on prosody.
Functionals are cached in $SER_CACHE_DIR.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ser_core.audio import View
from ser_core.config import FeatureConfig
from ser_core.data import data_dir, ravdess_manifest
from ser_core.features import default_cache_dir
from ser_core.labels import EMOTIONS
from ser_core.metrics import unweighted_average_recall
from ser_core.prosody import (
    FUNCTIONALS_VERSION,
    corpus_functionals,
    fit_prosody,
    fuse,
    group_standardize,
    standardize_per_speaker,
)

VIEWS = {"clean": View(), "telephone": View(telephone=True)}
MODES = ("actor", "random", "skewed", "two", "uniform", "mostly")
PROBS = [f"p_{e}" for e in EMOTIONS]


def cached_functionals(df: pd.DataFrame, cfg: FeatureConfig, condition: str) -> pd.DataFrame:
    """Functionals of every manifest clip under one condition, indexed by file name."""
    cache = default_cache_dir() / f"prosody_{cfg.digest()}_{condition}_v{FUNCTIONALS_VERSION}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    f = corpus_functionals(list(df["path"]), cfg, VIEWS[condition])
    if f.attrs["errors"]:
        raise SystemExit(f"cannot compute functionals: {f.attrs['errors']}")
    f.index = [Path(p).name for p in f.index]
    cache.parent.mkdir(parents=True, exist_ok=True)
    f.to_parquet(cache)
    return f


def run_probabilities(runs: list[str]) -> tuple[pd.DataFrame, FeatureConfig]:
    """Held-out speech probabilities of the runs (averaged), keyed by fold, condition and
    file name; and the first run's feature config."""
    tables = []
    for run in runs:
        path = next(p for p in (Path(run) / "predictions.csv.gz", Path(run) / "predictions.csv") if p.exists())
        t = pd.read_csv(path)
        t = t[t["vocal_channel"] == "speech"].assign(name=lambda d: [Path(p).name for p in d["path"]],
                                                     fold=lambda d: d["split"].str.removeprefix("fold_").astype(int))
        tables.append(t.set_index(["fold", "condition", "name"]).sort_index())
    common = tables[0].index
    for t in tables[1:]:
        common = common.intersection(t.index)
    probs = sum(t.loc[common, PROBS].to_numpy() for t in tables) / len(tables)
    out = pd.DataFrame(probs, index=common, columns=PROBS)
    cfg = FeatureConfig.from_saved(json.loads((Path(runs[0]) / "config.json").read_text())["feature_config"])
    return out, cfg


def stats_groups(te: pd.DataFrame, mode: str, k: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(clips scored, extra clips in the statistics only) for every group of a fold's held-out speech."""
    if mode in ("actor", "uniform"):
        keys = ["actor"] + (["emotion"] if mode == "uniform" else [])
        return [(g.index.to_numpy(), np.array([], dtype=object)) for _, g in te.groupby(keys)]
    groups = []
    for actor, g in te.groupby("actor"):
        names = rng.permutation(g.index.to_numpy())
        for chunk in (names[i : i + k] for i in range(0, len(names), k)):
            if mode == "skewed":
                pool = g.index[g["emotion"].isin(["neutral", "calm"])].to_numpy()
            elif mode == "two":
                other = rng.choice(sorted(set(te["actor"]) - {actor}))
                pool = te.index[te["actor"] == other].to_numpy()
            elif mode == "mostly":
                mood = g.index[g["emotion"] == rng.choice(sorted(set(g["emotion"])))].to_numpy()
                groups.append((chunk, rng.choice(mood, size=len(chunk), replace=True)))
                continue
            else:
                pool = np.array([], dtype=object)
            groups.append((chunk, rng.choice(pool, size=min(len(chunk), len(pool)), replace=False)))
    return groups


def model_inputs(x: np.ndarray, scored: int, raw: bool) -> np.ndarray:
    """The model's inputs for the first `scored` rows of a group's functionals `x`:
    standardised over the group, and with `raw` the functionals themselves beside them."""
    z = group_standardize(x)[:scored]
    return np.hstack([z, x[:scored]]) if raw else z


TRAINING_GROUPINGS = (("actor", 0), ("random", 30), ("random", 8), ("mostly", 30), ("uniform", 0))


def call_like_examples(feats: dict[str, pd.DataFrame], train: pd.DataFrame,
                       rng: np.random.Generator) -> tuple[np.ndarray, list[str], list[int]]:
    """Training inputs of every clip under every `TRAINING_GROUPINGS` of its actor, vocal
    channel and view, with their emotions and actors."""
    xs, labels, actors = [], [], []
    for view in ("clean", "telephone"):
        for _, g in train.groupby(["actor", "vocal_channel"]):
            for mode, k in TRAINING_GROUPINGS:
                for scored, extra in stats_groups(g, mode, k, rng):
                    xs.append(model_inputs(feats[view].loc[np.concatenate([scored, extra])].to_numpy(), len(scored), True))
                    labels += list(g.loc[scored, "emotion"])
                    actors += list(g.loc[scored, "actor"])
    return np.concatenate(xs), labels, actors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--group-size", type=int, default=30)
    ap.add_argument("--reps", type=int, default=5, help="random groupings per fold")
    ap.add_argument("--weight", type=float, default=0.5)
    ap.add_argument("--folds", default="1,2,3,4,5,6")
    ap.add_argument("--call-like-training", action="store_true")
    ap.add_argument("--no-speaker-statistics", action="store_true")
    args = ap.parse_args()

    probs, cfg = run_probabilities(args.runs)
    conditions = sorted(set(probs.index.get_level_values("condition")) & set(VIEWS))
    df = ravdess_manifest(data_dir())
    df.index = [Path(p).name for p in df["path"]]
    feats = {c: cached_functionals(df, cfg, c) for c in VIEWS}
    rows = []
    for fold in (int(f) for f in args.folds.split(",")):
        train = df[df["fold"] != fold]
        if args.no_speaker_statistics:
            views = [feats[v].loc[train.index].to_numpy() for v in ("clean", "telephone")]
            model = fit_prosody(np.concatenate(views), list(train["emotion"]) * 2, list(train["actor"]) * 2)
        elif args.call_like_training:
            model = fit_prosody(*call_like_examples(feats, train, np.random.default_rng(100 + fold)), c_grid=(0.01,))
        else:
            z, meta = standardize_per_speaker({v: feats[v] for v in ("clean", "telephone")}, train)
            model = fit_prosody(z, meta["emotion"], meta["actor"])
        test = df[(df["fold"] == fold) & (df["vocal_channel"] == "speech")]
        y = [EMOTIONS.index(e) for e in test["emotion"]]
        for cond in conditions:
            cnn = probs.loc[(fold, cond)].loc[test.index].to_numpy()
            for mode in ("actor",) if args.no_speaker_statistics else MODES:
                rng = np.random.default_rng(fold)
                for rep in range(1 if mode in ("actor", "uniform") else args.reps):
                    pro = pd.DataFrame(0.0, index=test.index, columns=EMOTIONS)
                    for scored, extra in stats_groups(test, mode, args.group_size, rng):
                        x = feats[cond].loc[np.concatenate([scored, extra])].to_numpy()
                        inputs = x[: len(scored)] if args.no_speaker_statistics else model_inputs(
                            x, len(scored), args.call_like_training)
                        pro.loc[scored] = model.predict_proba(inputs)
                    for name, p in (("run", cnn), ("prosody", pro.to_numpy()), ("fused", fuse(cnn, pro.to_numpy(), args.weight))):
                        rows.append({"fold": fold, "condition": cond, "grouping": mode, "rep": rep, "scorer": name,
                                     "uar": unweighted_average_recall(y, p.argmax(axis=1))})
        print(f"fold {fold}: prosody model C={model.c:g}", flush=True)
    res = pd.DataFrame(rows).groupby(["condition", "grouping", "scorer", "fold"])["uar"].mean()
    print(f"\nheld-out speech UAR, {' + '.join(args.runs)}; prosody weight {args.weight}, groups of {args.group_size}"
          + ("; call-like training" if args.call_like_training else "")
          + ("; no speaker statistics" if args.no_speaker_statistics else ""))
    for (cond, mode, scorer), per_fold in res.groupby(level=[0, 1, 2]):
        v = per_fold.to_numpy()
        print(f"{cond:9s} {mode:6s} {scorer:7s} {v.mean():.3f} ± {v.std(ddof=1) if v.size > 1 else 0:.3f}  "
              + " / ".join(f"{x:.3f}" for x in v))


if __name__ == "__main__":
    main()
