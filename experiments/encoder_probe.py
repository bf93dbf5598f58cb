"""The linear probe of issue #26 on cached encoder states: the floor a head must beat.

For each clip (clean view) the mean of every unit of every hidden state over the frames
(optionally also the standard deviation), standardised, then a logistic regression (C=0.01).
Protocol: the speaker folds of ``--test-corpus`` (CREMA-D by default) in ``../shared/data``, trained
on the other corpus and the other folds (``--alone``: the other folds only), argmax over the test
corpus's classes, UAR; ``--cross``: trained on the other corpus alone, tested on every clip of
``--test-corpus`` over the classes both have. ``--layers K`` keeps hidden states 0..K-1 only
(what truncating the encoder would leave).

    PYTHONPATH=. python experiments/encoder_probe.py [--encoder whisper-base] [--precision int8] [--folds 1,2]
        [--layers 7 5 4] [--std] [--test-corpus ravdess] [--alone | --cross]

Reads the states cache of ``ser train --model encoder`` (computes missing clips).
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.preprocessing import StandardScaler

from ser_core.head import HeadConfig
from ser_core.training.corpora import CLASSES, load_corpora
from ser_core.training.heads import _states_for


def pooled(files: list, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-clip (layers, width) means and standard deviations over frames."""
    means, stds = [], []
    for i in usable:
        x = np.load(files[i]).astype(np.float32)
        means.append(x.mean(axis=1))
        stds.append(x.std(axis=1))
    return np.stack(means), np.stack(stds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--encoder", default="whisper-base")
    ap.add_argument("--precision", default="int8", choices=("float32", "int8"), help="the encoder's precision")
    ap.add_argument("--folds", default="1,2")
    ap.add_argument("--layers", type=int, nargs="+", default=[0], help="hidden states kept (0: all)")
    ap.add_argument("--std", action="store_true", help="add each unit's standard deviation")
    ap.add_argument("--test-corpus", default="crema_d", choices=sorted(CLASSES))
    ap.add_argument("--alone", action="store_true", help="train on the test corpus's other folds only")
    ap.add_argument("--cross", action="store_true", help="train on the other corpus only, test on all of this one")
    args = ap.parse_args()
    df = load_corpora(args.data, ["ravdess", "crema_d"])
    files, usable = _states_for(df, HeadConfig(encoder=args.encoder, encoder_precision=args.precision), ["clean"])
    df = df.iloc[usable].reset_index(drop=True)
    means, stds = pooled(files["clean"], usable)
    ours = (df["corpus"] == args.test_corpus).to_numpy()
    classes = [c for c in CLASSES[args.test_corpus] if not args.cross or c in set(df["emotion"][~ours])]
    heard = ours if args.alone else ~ours if args.cross else np.ones(len(df), bool)
    splits = [ours & df["emotion"].isin(classes).to_numpy()] if args.cross else \
        [ours & (df["fold"] == int(f)).to_numpy() for f in args.folds.split(",")]
    for keep in args.layers:
        keep = keep or means.shape[1]
        x = means[:, :keep].reshape(len(df), -1)
        if args.std:
            x = np.concatenate([x, stds[:, :keep].reshape(len(df), -1)], axis=1)
        uars = []
        for test in splits:
            train = heard & ~test
            scaler = StandardScaler().fit(x[train])
            clf = LogisticRegression(C=0.01, max_iter=2000).fit(scaler.transform(x[train]), df["emotion"][train])
            proba = clf.predict_proba(scaler.transform(x[test]))
            idx = [list(clf.classes_).index(c) for c in classes]
            pred = np.array(classes)[proba[:, idx].argmax(axis=1)]
            uars.append(recall_score(df["emotion"][test], pred, average="macro"))
        print(f"hidden states 0..{keep - 1}{' mean+std' if args.std else ' mean'}: UAR per split "
              + " ".join(f"{u:.3f}" for u in uars) + f", mean {np.mean(uars):.3f}", flush=True)


if __name__ == "__main__":
    main()
