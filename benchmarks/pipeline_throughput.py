"""Throughput and memory of the Beam job on the DirectRunner, for several bundles side by side.

1. Throughput: the example calls (8 kHz stereo, G.711) copied N times, scored by the whole
   job in one process with each bundle: call audio per CPU second (x real time per core:
   the job's CPU time over all its threads, decoding, VAD, encoder and head included), per
   wall second, and the ratio between the bundles. First, unmeasured, each bundle scores one
   call: what the process pays once per runtime (imports, TensorFlow, ONNX Runtime and Beam
   start-up, JIT compilation), which a nightly job spreads over a day of calls, is left out
   of every measured run; each measured run still loads its own bundle (a new pipeline). ``BUNDLE@float32`` runs an encoder bundle
   with its encoder on ONNX Runtime in float32 and ``BUNDLE@keras`` on Keras/TensorFlow
   (float32), whatever precision the bundle's head was trained on: for the runtimes and
   precisions side by side (speed only; the bundle's own precision is what it is measured at).
2. Memory: a 30-second example call, then stereo calls of a quarter of the length and
   the full length (default 2 hours, 16 kHz, looped example calls), each scored in a
   fresh process: peak RSS side by side. Bounded memory shows as a flat peak from the
   shorter long call to the longer one.

    python benchmarks/pipeline_throughput.py [--models default,default@float32,cnn] [--copies 12] [--hours 2] [--parts memory]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from pipelines import score_calls
from ser_core import encoder, encoder_bundle
from ser_core.audio import resample

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "calls"


def _loader(variant: str):
    """`load_encoder` as the bundle calls it (no variant), or held to float32 on onnxruntime or keras."""
    if not variant:
        return encoder.load_encoder
    if variant not in ("float32", "keras"):
        raise SystemExit(f"unknown variant @{variant}: use @float32 or @keras")
    runtime = "keras" if variant == "keras" else "onnxruntime"
    return lambda name, threads=0, **_: encoder.load_encoder(name, runtime=runtime, precision="float32", threads=threads)


def audio_seconds(folder: Path) -> float:
    return sum(sf.info(p).duration for p in folder.glob("*.wav"))


def throughput(models: list[str], copies: int, tmp: Path) -> None:
    calls = tmp / "calls"
    calls.mkdir()
    for k in range(copies):
        for src in EXAMPLES.glob("*.wav"):
            shutil.copy(src, calls / f"{src.stem}_{k:02d}.wav")
    seconds = audio_seconds(calls)
    warm = tmp / "warm"
    warm.mkdir()
    shutil.copy(sorted(EXAMPLES.glob("*.wav"))[0], warm)
    rates = {}
    for k, model in enumerate(models * 2):
        bundle, _, variant = model.partition("@")
        # the benchmark's only lever on the product: the runtime and precision the encoder bundle loads its encoder on
        encoder_bundle.load_encoder = _loader(variant)
        if k < len(models):  # the warm-up round
            score_calls.run([f"--input={warm}/*.wav", f"--output={tmp / f'warm_{k}'}", f"--model={bundle}",
                             "--log_level=ERROR"])
            continue
        cpu0, t0 = time.process_time(), time.perf_counter()
        score_calls.run([f"--input={calls}/*.wav", f"--output={tmp / ('out_' + Path(model).name)}", f"--model={bundle}",
                         "--log_level=ERROR"])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        rates[model] = seconds / cpu
        print(f"{model:>12}: {seconds / 60:.1f} min of calls, {cpu:.1f} CPU s, {wall:.1f} wall s: "
              f"{seconds / cpu:.1f}x real time per core, {seconds / wall:.1f}x real time (wall, {os.cpu_count()} cores)")
    first, *others = models
    for other in others:
        print(f"{first} vs {other}: {rates[first] / rates[other]:.2f}x the speed per core")


def long_call(path: Path, hours: float, sr: int = 16000) -> None:
    """Loop the example calls (resampled to `sr`) into one long stereo file, block by block."""
    loop = [resample(sf.read(p, dtype="float32")[0].T, sf.info(p).samplerate, sr).T for p in sorted(EXAMPLES.glob("*.wav"))]
    target = int(hours * 3600 * sr)
    with sf.SoundFile(path, "w", sr, 2, subtype="PCM_16") as f:
        written = 0
        while written < target:
            for block in loop:
                block = block[: target - written]
                f.write(block)
                written += len(block)


# A fresh parent per measurement: RUSAGE_CHILDREN reports the largest peak of any finished child.
_MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _peak_rss_mib(path: Path, out: Path, model: str) -> tuple[float, float]:
    """Run the job on one file in a fresh process; (its peak RSS in MiB, wall seconds)."""
    t0 = time.perf_counter()
    job = [sys.executable, "-m", "pipelines.score_calls", f"--input={path}", f"--output={out}", f"--model={model}"]
    done = subprocess.run([sys.executable, "-c", _MEASURE, *job], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - t0


def memory(model: str, hours: float, tmp: Path) -> None:
    """Peak RSS on a 30 s example call, then on calls of hours/4 and `hours`, shortest first."""
    short = sorted(EXAMPLES.glob("*.wav"))[0]
    rows = [(sf.info(short).duration, *_peak_rss_mib(short, tmp / "out_short", model))]
    for h in (hours / 4, hours):
        path = tmp / f"long_{h:g}h.wav"
        long_call(path, h)
        rows.append((sf.info(path).duration, *_peak_rss_mib(path, tmp / f"out_{h:g}h", model)))
        path.unlink()
    for seconds, peak, wall in rows:
        print(f"{seconds / 60:7.1f} min stereo call: peak RSS {peak:6.0f} MiB, scored in {wall:6.1f} s "
              f"({seconds / wall:5.1f}x real time, one worker)")
    whole_mb = hours * 3600 * 16000 * 2 * 8 / 2**20
    print(f"peak RSS {hours:g} h vs 30 s call: {rows[-1][1] / rows[0][1]:.2f}x; {hours:g} h vs {hours / 4:g} h: "
          f"{rows[-1][1] / rows[-2][1]:.2f}x (flat = bounded); the {hours:g} h call decoded whole as float64 "
          f"would take {whole_mb:.0f} MiB by itself")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default,default@float32,cnn",
                    help="comma-separated bundles ('default', 'cnn' or folders; BUNDLE@float32: encoder on ONNX "
                         "Runtime in float32, BUNDLE@keras: on Keras)")
    ap.add_argument("--copies", type=int, default=12, help="copies of the example calls for the throughput run")
    ap.add_argument("--hours", type=float, default=2.0, help="length of the long call for the memory run")
    ap.add_argument("--parts", nargs="+", choices=("throughput", "memory"), default=["throughput", "memory"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models = args.models.split(",")
        if "throughput" in args.parts:
            throughput(models, args.copies, tmp)
        if "memory" in args.parts:
            for model in (m for m in models if "@" not in m):
                print(f"-- {model}")
                memory(model, args.hours, tmp)


if __name__ == "__main__":
    main()
