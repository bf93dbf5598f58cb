"""CPU cost of the frozen Whisper encoders on ONE core (ms of CPU per second of audio).

Prints one table for whisper-base and whisper-tiny.en on 2 s, 5 s and 20 s clips, for both
runtimes side by side (the Keras model on TensorFlow, the same graph on ONNX Runtime in float32
and in int8, each held to one thread, BLAS and OpenMP too: `ser_core.threads`), one clip at a
time (``encode``, as the product encodes), with each row's deviation from Keras (the largest
over layers of max |diff| / layer RMS, and of the relative RMS error) and the ratios of the
runtimes and precisions.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/encoder_speed.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ser_core import encoder as E  # noqa: E402
from ser_core.threads import limit_threads  # noqa: E402

SR = E.SAMPLE_RATE
MODELS = ["whisper-base", "whisper-tiny.en"]
LENGTHS = [2.0, 5.0, 20.0]


def clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 1.3 * t)) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 * (1 + np.sin(2 * np.pi * 2.5 * t)) ** 2)
    return (0.1 * y + 0.003 * rng.standard_normal(n)).astype(np.float32)


def cpu_ms_per_audio_s(fn, audio_s: float, min_cpu_s: float) -> float:
    """Best of a few timed rounds of ``fn`` (after one warm-up), CPU time of the whole process."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < min_cpu_s or best == float("inf"):
        t0 = time.process_time()
        fn()
        dt = time.process_time() - t0
        best, spent = min(best, dt), spent + dt
    return 1000.0 * best / audio_s


def deviation(ref: np.ndarray, out: np.ndarray) -> float:
    rms = np.sqrt((ref.astype(np.float64) ** 2).mean(axis=(1, 2)))
    return float(max(np.abs(out[i] - ref[i]).max() / rms[i] for i in range(ref.shape[0])))


def rms_deviation(ref: np.ndarray, out: np.ndarray) -> float:
    err = ((out.astype(np.float64) - ref) ** 2).mean(axis=(1, 2)) / (ref.astype(np.float64) ** 2).mean(axis=(1, 2))
    return float(np.sqrt(err).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing rounds")
    args = ap.parse_args()
    min_cpu = 1.0 if args.quick else 3.0
    limit_threads(1)
    rows = []
    for name in MODELS:
        spec = E.encoder_spec(name)
        with np.load(spec.directory / "encoder.npz") as arrays:
            variants = {"keras": E.load_encoder(name, runtime="keras"),
                        "onnxruntime": E.OnnxEncoder(spec, arrays, threads=1),
                        "onnxruntime int8": E.OnnxEncoder(spec, arrays, threads=1, precision="int8")}
        for seconds in LENGTHS:
            y = clip(seconds, seed=int(seconds))
            ref = E.encode(variants["keras"], y)
            for label, m in variants.items():
                ms = cpu_ms_per_audio_s(lambda m=m: E.encode(m, y), seconds, min_cpu)
                out = E.encode(m, y)
                rows.append((name, seconds, label, ms, deviation(ref, out), rms_deviation(ref, out)))

    print("\nCPU per audio second on ONE core (every thread pool held to 1), best round; "
          "vs Keras, worst layer: dev = max |diff| / layer RMS, rms dev = RMS error / layer RMS")
    print(f"{'model':<16}{'clip':>6}  {'variant':<20}{'ms CPU/s':>10}{'x real time':>13}{'dev':>10}{'rms dev':>10}")
    for name, seconds, label, ms, dev, rms in rows:
        print(f"{name:<16}{seconds:>5.0f}s  {label:<20}{ms:>10.1f}{1000.0 / ms:>12.1f}x{dev:>10.1e}{rms:>10.1e}")
    cost = {(n, s_, lab): ms for n, s_, lab, ms, *_ in rows}
    print("\nCPU per audio second, ratios: keras / onnxruntime float32, and onnxruntime float32 / int8:")
    for (n, s_, lab), ms in cost.items():
        if lab.startswith("onnxruntime") and "int8" not in lab:
            kind = lab.replace("onnxruntime", "").strip() or "encode"
            int8 = cost[(n, s_, lab.replace("onnxruntime", "onnxruntime int8"))]
            print(f"  {n:<16}{s_:>5.0f}s  {kind:<14}{cost[(n, s_, lab.replace('onnxruntime', 'keras'))] / ms:.2f}x"
                  f"   int8 {ms / int8:.2f}x")


if __name__ == "__main__":
    main()
