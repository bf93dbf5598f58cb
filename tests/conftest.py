"""Shared fixtures: synthetic signals and the real corpus (via SER_DATA_DIR)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from ser_core.training.data import data_dir

SR = 16000


def tone(seconds: float, freq: float = 220.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float, sr: int = SR, amp: float = 0.5, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a slow syllable-like envelope (energy well above silence)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 6))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    y = y * env + 0.01 * rng.standard_normal(t.size)
    return (amp * y / np.max(np.abs(y))).astype(np.float32)


def load_benchmark(name: str):
    """A script of `benchmarks/` or `experiments/` imported as a module (scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).parents[1]
    path = next(p for p in (root / "benchmarks" / f"{name}.py", root / "experiments" / f"{name}.py") if p.exists())
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def corpus_root():
    """The RAVDESS folder of the shared data; tests needing it skip when it is absent."""
    root = data_dir()
    if root is None or not (root / "ravdess" / "manifest.csv").exists():
        if os.environ.get("SER_REQUIRE_DATA"):
            pytest.fail("SER_REQUIRE_DATA is set but RAVDESS was not found (set SER_DATA_DIR)")
        pytest.skip("RAVDESS not found: set SER_DATA_DIR to the folder holding ravdess/manifest.csv")
    return root / "ravdess"


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """An untrained but complete CNN bundle: the job's mechanics do not depend on accuracy
    (the default model runs through the job in test_default_model.py)."""
    from ser_core.bundle import save_bundle
    from ser_core.config import FeatureConfig, ModelConfig, TrainConfig
    from ser_core.models import build_model

    fcfg = FeatureConfig(n_mels=24, frames=64, mfcc_frames=64)
    mcfg = ModelConfig(filters=(8, 16), dense_units=16)
    return str(save_bundle(tmp_path_factory.mktemp("bundle"), build_model(mcfg, fcfg), feature_cfg=fcfg, model_cfg=mcfg,
                           train_cfg=TrainConfig(), info={"training_command": "untrained test bundle"}))


@pytest.fixture(scope="session")
def example_calls_output(tmp_path_factory):
    """The nightly job's output folder for the example calls, scored with the default model on
    the date docs/analysts.md shows (run once per test session)."""
    from pathlib import Path

    from pipelines import score_calls

    calls = Path(__file__).parents[1] / "examples" / "calls"
    out = tmp_path_factory.mktemp("example_calls") / "out"
    counts = score_calls.run([f"--input={calls}/*.wav", f"--output={out}", "--date=2026-11-24", "--model=default"])
    return out, counts
