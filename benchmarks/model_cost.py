"""CPU cost of deep-model architectures, side by side in one run: parameters, training
milliseconds per batch of 32 cubes, and inference milliseconds per segment (batched by 64
and one at a time), each also as a ratio to the first architecture.

    python benchmarks/model_cost.py                      # four blocks, twice as wide, five blocks
    python benchmarks/model_cost.py "filters=[32,64,128,256]" "filters=[32,64,128,256] dense_units=256"

Each argument is one architecture: space-separated ModelConfig overrides on the deep model's
defaults (as `ser train --arch`). The architectures are timed in turn, round after round, so
that a change in the machine's load falls on all of them alike; medians over rounds.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

DEFAULT = ("filters=[32,64,128,256]", "filters=[64,128,256,512]", "filters=[32,64,128,256,512]")


def _timed(fn, repeats: int) -> float:
    """Milliseconds per call of `fn`, over `repeats` calls."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archs", nargs="*", default=list(DEFAULT), help="ModelConfig overrides, one architecture each")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from ser_core.cli import _config
    from ser_core.config import FeatureConfig, ModelConfig, TrainConfig
    from ser_core.labels import EMOTIONS, INTENSITIES
    from ser_core.models import build_model
    from ser_core.training.cnn import compile_model

    feature_cfg, train_cfg = FeatureConfig(), TrainConfig.for_model("deep")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, *feature_cfg.cube_shape)).astype(np.float32)
    y = {"emotion": np.eye(len(EMOTIONS), dtype=np.float32)[rng.integers(0, len(EMOTIONS), 32)],
         "intensity": np.eye(len(INTENSITIES), dtype=np.float32)[rng.integers(0, len(INTENSITIES), 32)]}
    models = []
    for arch in args.archs:
        model = build_model(_config(ModelConfig, None, arch.split(), base=ModelConfig.for_model("deep")), feature_cfg)
        compile_model(model, train_cfg, steps=100)
        for _ in range(3):  # warm-up: graph tracing, allocations
            model.train_on_batch(x[:32], y)
            model.predict(x, batch_size=64, verbose=0)
            model.predict_on_batch(x[:1])
        models.append(model)

    times = {arch: {"train": [], "batched": [], "single": []} for arch in args.archs}
    for _ in range(args.rounds):
        for arch, model in zip(args.archs, models):
            times[arch]["train"].append(_timed(lambda: model.train_on_batch(x[:32], y), 5))
            times[arch]["batched"].append(_timed(lambda: model.predict(x, batch_size=64, verbose=0), 3) / 64)
            times[arch]["single"].append(_timed(lambda: model.predict_on_batch(x[:1]), 20))

    med = {arch: {k: float(np.median(v)) for k, v in t.items()} for arch, t in times.items()}
    ref = med[args.archs[0]]
    print(f"input {feature_cfg.cube_shape}; medians over {args.rounds} rounds; ratio to the first architecture in brackets")
    print("| architecture (--arch) | parameters | train ms / batch of 32 | inference ms / segment, batched 64 | "
          "inference ms / segment, one at a time |")
    print("|---|---|---|---|---|")
    for arch, model in zip(args.archs, models):
        m = med[arch]
        cells = [f"{m[k]:.{d}f} (×{m[k] / ref[k]:.2f})" for k, d in (("train", 0), ("batched", 2), ("single", 1))]
        print(f"| `{arch}` | {model.count_params() / 1e6:.2f} M | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
