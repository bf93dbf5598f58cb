"""The emotion head with the encoder's layers concatenated per frame, against the shipped head.

The shipped head (`ser_core.head.build_head`) mixes the 7 hidden states into one by a learned
softmax-weighted sum, then projects each frame. The linear probe (`encoder_probe.py`), which
the shipped head trails, sees every layer's units separately. This variant lets the head do
the same: each frame's standardised states of all layers are concatenated (7 x 512) and
projected by one learned matrix, the rest of the head unchanged. It is trained and scored
through `ser train --model encoder`'s own protocol code (`run_head_protocol`), with
`build_head` swapped for the variant: same states cache, views, crops and optimisation.

    PYTHONPATH=. python experiments/head_concat_layers.py --out runs/exp_concat [--test-corpus crema_d] [--folds 1,2]
        [--input-dropout 0.1]

Prints UAR clean and through the telephone channel per held-out fold of the test corpus
(trained on the other corpus and the other folds; CREMA-D: its 6 classes, RAVDESS: 8); the
run folder holds the usual reports.
"""
from __future__ import annotations

import argparse

import keras
from keras import layers

from ser_core import head as H
from ser_core.labels import EMOTIONS, INTENSITIES
from ser_core.training import heads


def concat_head(input_dropout: float):
    """A `build_head` replacement: concatenated layers -> dropout -> the head's projection."""

    def build(cfg: H.HeadConfig, n_layers: int, width: int, mean=None, variance=None) -> keras.Model:
        states, mask, x = H._standardised_inputs(n_layers, width, mean, variance)
        x = layers.Reshape((-1, n_layers * width))(layers.Permute((2, 1, 3))(x))  # (batch, frames, layers * width)
        x = layers.Dropout(input_dropout)(x)
        x = layers.Dense(cfg.projection, activation="gelu", name="projection")(x)
        for i in range(cfg.conv_layers):
            x = H.MaskFrames(name=f"mask_{i}")([x, mask])
            x = layers.Conv1D(cfg.conv_channels, cfg.conv_kernel, padding="same", activation="gelu", name=f"conv_{i}")(x)
            x = layers.Dropout(cfg.dropout / 2)(x)
        x = H.AttentiveStats(cfg.attention_units, name="pool")([x, mask])
        x = layers.Dropout(cfg.dropout)(x)
        if cfg.dense_units:
            x = layers.Dropout(cfg.dropout)(layers.Dense(cfg.dense_units, activation="gelu", name="dense")(x))
        return keras.Model({"states": states, "mask": mask},
                           {"emotion": layers.Dense(len(EMOTIONS), activation="softmax", name="emotion")(x),
                            "intensity": layers.Dense(len(INTENSITIES), activation="softmax", name="intensity")(x)})

    return build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--test-corpus", default="crema_d", choices=("crema_d", "ravdess"))
    ap.add_argument("--folds", help="held-out folds (default: every fold)")
    ap.add_argument("--input-dropout", type=float, default=0.1)
    args = ap.parse_args()
    heads.build_head = concat_head(args.input_dropout)
    r = heads.run_head_protocol(args.data, args.out, H.HeadConfig(), heads.HeadTrainConfig(),
                                corpora=("ravdess", "crema_d"), protocol="folds", test_corpus=args.test_corpus,
                                folds=[int(f) for f in args.folds.split(",")] if args.folds else None,
                                test_telephone=True, verbose=0)
    for fold, v in r["folds"].items():
        print(f"{fold}: UAR clean {v['clean']['uar']:.3f}, telephone {v['telephone']['uar']:.3f}")


if __name__ == "__main__":
    main()
