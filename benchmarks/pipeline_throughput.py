"""Throughput and memory of the Beam job on the DirectRunner.

1. Throughput: the example calls copied N times, scored by the job in-memory (one
   worker) and with multi_processing (all cores), side by side: audio-hours per wall
   minute, multiple of real time, per core, and the ratio between the two modes.
2. Memory: one long stereo call (default 2 hours, 16 kHz) built by looping the example
   calls, scored in a subprocess; its peak RSS beside the size the call would take
   decoded whole as float64 (what bounded, block-wise reading avoids).

    python benchmarks/pipeline_throughput.py [--model default] [--copies 12] [--hours 2]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from pipelines import score_calls
from ser_core.audio import resample

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "calls"


def audio_seconds(folder: Path) -> float:
    return sum(sf.info(p).duration for p in folder.glob("*.wav"))


def throughput(model: str, copies: int, tmp: Path) -> None:
    calls = tmp / "calls"
    calls.mkdir()
    for k in range(copies):
        for src in EXAMPLES.glob("*.wav"):
            shutil.copy(src, calls / f"{src.stem}_{k:02d}.wav")
    hours = audio_seconds(calls) / 3600
    cores = os.cpu_count() or 1
    results = {}
    for mode, extra in (("in_memory, 1 worker", []),
                        (f"multi_processing, {cores} workers",
                         ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"])):
        t0 = time.perf_counter()
        score_calls.run([f"--input={calls}/*.wav", f"--output={tmp / 'out'}", f"--model={model}", *extra])
        minutes = (time.perf_counter() - t0) / 60
        results[mode] = minutes
        print(f"{mode:>28}: {hours * 60:.1f} audio-min in {minutes * 60:.1f} s = {hours / minutes:.3f} audio-h/min, "
              f"{hours * 60 / minutes:.1f}x real time, {hours * 60 / minutes / cores:.1f}x real time per core")
    one, many = results.values()
    print(f"multi_processing vs in_memory: {one / many:.2f}x faster")


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


def memory(model: str, hours: float, tmp: Path) -> None:
    path = tmp / "long" / "long_call.wav"
    path.parent.mkdir()
    long_call(path, hours)
    info = sf.info(path)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipelines.score_calls", f"--input={path}", f"--output={tmp / 'out_long'}",
                    f"--model={model}"], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    whole_mb = info.frames * info.channels * 8 / 2**20
    print(f"long call: {info.duration / 3600:.2f} h stereo at {info.samplerate} Hz, scored in {wall / 60:.1f} min "
          f"({info.duration / wall:.1f}x real time)")
    print(f"peak RSS of the job {peak_mb:.0f} MiB vs {whole_mb:.0f} MiB for the call decoded whole as float64 "
          f"(ratio {peak_mb / whole_mb:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--copies", type=int, default=12, help="copies of the example calls for the throughput run")
    ap.add_argument("--hours", type=float, default=2.0, help="length of the long call for the memory run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        throughput(args.model, args.copies, tmp)
        memory(args.model, args.hours, tmp)


if __name__ == "__main__":
    main()
