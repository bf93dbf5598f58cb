"""Talk time on phone lines: the old level-based segmenter against the voice-activity detectors.

    PYTHONPATH=. python experiments/talk_time.py [--calls 8] [--seed 0] [--data DIR]

Builds stereo calls of known speech: real clips (RAVDESS speech and CREMA-D, drawn at
random), each cut to its speech by a strict energy trim of the clean clip (40 dB below its
loudest frame and 6 dB above its noise floor: the ground truth), placed on two channels
with random gaps (0.4-4 s, the turns of both sides overlapping at times). Each channel
goes through a telephone channel (300-3400 Hz band-pass, 8 kHz, G.711 mu-law), clean or
with telephone-band noise at 20 / 15 / 10 dB below the speech's level (RMS over the
speech only). Silent channels (digital zero) and noise-only channels (the same noise at
the 20, 15 and 10 dB levels of a -20 dBFS talker) are scored too.

Every method reads the call as the job does, from a WAV file block by block
(`segment_call`'s defaults: 30 s blocks, 0.3 s minimum speech and silence). The old
segmenter (frame levels within 30 dB of the channel's 95th-percentile frame and 10 dB
above its noise floor, the job's default until the VAD replaced it) is kept here as the
baseline. Prints per condition the median and 90th percentile of the absolute talk-time
error per channel (%), the median signed error (bias), the seconds of speech invented on
silent and noise-only channels, and each method's speed (x real time on one core, per
channel: the scan alone, not the decoding). Seeded: the same arguments print the same table.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import butter, sosfilt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser_core.audio import (  # noqa: E402
    frame_levels_db, load_audio, remove_offset, resample, speech_regions, trim_silence,
)
from ser_core.calls import open_audio, segment_call, total_length  # noqa: E402
from ser_core.config import SegmentConfig  # noqa: E402
from ser_core.training.data import data_dir  # noqa: E402

SR = 8000
SNRS = (None, 20.0, 15.0, 10.0)  # None: clean line
CALL_S = 60.0
SPEECH_DBFS = -20.0  # the level noise-only channels are scaled against
try:
    import webrtcvad  # noqa: F401  (optional comparison backend: pip install webrtcvad-wheels)
    METHODS: tuple[str, ...] = ("level (old)", "silero", "webrtc")
except ImportError:
    METHODS = ("level (old)", "silero")
# ground truth: each clean clip trimmed to what lies within 40 dB of its loudest frame and 6 dB above
# its noise floor. The job's 30 dB / 10 dB trim cuts the soft ends of CREMA-D's noisier sentences
# mid-word (1030_WSI_SAD_XX: 0.27-1.25 s of a sentence that runs to 1.84 s), which would count speech
# as silence in the truth.
TRUTH_TOP_DB, TRUTH_MARGIN_DB = 40.0, 6.0
_BAND = butter(6, [300, 3400], btype="bandpass", fs=SR, output="sos")


def level_regions(f: sf.SoundFile, block_s: float = 30.0, hop_s: float = 0.016) -> dict[int, np.ndarray]:
    """The segmenter the VAD replaced in `segment_call` (ser_core before #27): frame levels
    block by block (`frame_levels_db`, each block without its DC offset), then
    `speech_regions` at its defaults (30 dB, 10 dB noise margin). Regions in seconds per channel."""
    hop = max(1, round(hop_s * f.samplerate))
    block = max(1, round(block_s * f.samplerate / hop)) * hop
    f.seek(0)
    lv = np.concatenate([frame_levels_db(np.stack([remove_offset(c) for c in b.T]), hop)
                         for b in f.blocks(blocksize=block, dtype="float32", always_2d=True)], axis=-1)
    return {ch: np.minimum(speech_regions(lv[ch], hop, f.samplerate), f.frames) / f.samplerate for ch in range(f.channels)}


def load_clips(root: Path, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` clips, half RAVDESS speech and half CREMA-D, trimmed to their speech, at 8 kHz band-passed."""
    rav = sorted((root / "ravdess" / "speech").rglob("*.flac")) + sorted((root / "ravdess" / "speech").rglob("*.wav"))
    cre = sorted((root / "crema_d" / "audio").glob("*.flac")) + sorted((root / "crema_d" / "audio").glob("*.wav"))
    if not rav or not cre:
        raise SystemExit(f"no RAVDESS speech or CREMA-D audio under {root} (set SER_DATA_DIR or --data)")
    paths = [rav[i] for i in rng.choice(len(rav), n // 2, replace=False)] + \
            [cre[i] for i in rng.choice(len(cre), n - n // 2, replace=False)]
    return [load_clip(p) for p in paths]


def load_clip(path: str | Path) -> np.ndarray:
    """A clip trimmed to its speech (the truth's trim), at 8 kHz, band-passed to the telephone band."""
    y, _ = load_audio(path, sr=16000)
    y, _ = trim_silence(y, top_db=TRUTH_TOP_DB, noise_margin_db=TRUTH_MARGIN_DB)
    return sosfilt(_BAND, resample(y, 16000, SR)).astype(np.float32)


def band_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    z = sosfilt(_BAND, rng.standard_normal(n))
    return (z / np.sqrt(np.mean(z**2))).astype(np.float32)


def build_channel(clips: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A channel of clips with random gaps; returns it (at -20 dBFS speech RMS, clean) and the truth mask."""
    y = np.zeros(int(CALL_S * SR), np.float32)
    mask = np.zeros(y.size, bool)
    t = int(rng.uniform(0.3, 3.0) * SR)
    while True:
        c = clips[rng.integers(len(clips))]
        c = c / np.sqrt(np.mean(c**2)) * 10 ** ((SPEECH_DBFS + rng.uniform(-6, 6)) / 20)
        if t + c.size > y.size:
            break
        y[t:t + c.size] += c
        mask[t:t + c.size] = True
        t += c.size + int(rng.uniform(0.4, 4.0) * SR)
    return y, mask


def through_line(y: np.ndarray, mask: np.ndarray | None, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """Telephone-band noise `snr_db` below the speech's RMS (or below -20 dBFS for a
    noise-only channel), then G.711 mu-law."""
    if snr_db is not None:
        ref = np.sqrt(np.mean(y[mask] ** 2)) if mask is not None and mask.any() else 10 ** (SPEECH_DBFS / 20)
        y = y + band_noise(y.size, rng) * ref * 10 ** (-snr_db / 20)
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1, 1), SR, format="WAV", subtype="ULAW")
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def wav(y: np.ndarray) -> io.BytesIO:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="FLOAT")
    buf.seek(0)
    return buf


def regions_of(method: str, stereo: np.ndarray) -> tuple[dict[int, np.ndarray], float]:
    """Regions (s) per channel and the seconds the scan took."""
    with open_audio(wav(stereo)) as f:
        t = time.process_time()
        if method == "level (old)":
            reg = level_regions(f)
        else:
            reg = segment_call(f, SegmentConfig(vad_backend=method), max_segment_s=4.0)[1]
        return reg, time.process_time() - t


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=8, help="stereo calls per condition")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="folder holding ravdess/ and crema_d/ (default: SER_DATA_DIR)")
    args = ap.parse_args(argv)
    root = data_dir(args.data)
    if root is None:
        raise SystemExit("no data folder: set SER_DATA_DIR or pass --data")
    rng = np.random.default_rng(args.seed)
    clips = load_clips(root, 60, rng)
    calls = [[build_channel(clips, rng) for _ in range(2)] for _ in range(args.calls)]
    rows, speed = [], {m: [0.0, 0.0] for m in METHODS}
    for snr in SNRS:
        name = "clean" if snr is None else f"{snr:g} dB"
        for k, chans in enumerate(calls):
            line_rng = np.random.default_rng([args.seed, k, 0 if snr is None else int(snr)])
            stereo = np.stack([through_line(y, m, snr, line_rng) for y, m in chans], axis=1)
            for method in METHODS:
                reg, cpu = regions_of(method, stereo)
                speed[method][0] += cpu
                speed[method][1] += stereo.shape[0] * 2 / SR
                for ch, (_, mask) in enumerate(chans):
                    truth = mask.sum() / SR
                    got = total_length(reg[ch])
                    rows.append({"condition": name, "method": method, "err": 100 * (got - truth) / truth})
    invented = []
    for name, snr in [("silent", None)] + [(f"noise only {s:g} dB", s) for s in SNRS[1:]]:
        for k in range(args.calls // 2):
            line_rng = np.random.default_rng([args.seed, k, 99, 0 if snr is None else int(snr)])
            zero = np.zeros(int(CALL_S * SR), np.float32)
            stereo = np.stack([through_line(zero, None, snr, line_rng) for _ in range(2)], axis=1)
            for method in METHODS:
                reg, cpu = regions_of(method, stereo)
                speed[method][0] += cpu
                speed[method][1] += stereo.shape[0] * 2 / SR
                invented.append({"condition": name, "method": method,
                                 "s": sum(total_length(reg[ch]) for ch in range(2)) / 2})
    df = pd.DataFrame(rows)
    table = {}
    for method in METHODS:
        col = {}
        for name in ["clean"] + [f"{s:g} dB" for s in SNRS[1:]]:
            e = df[(df.method == method) & (df.condition == name)]["err"]
            col[f"{name}: median |err| %"] = f"{np.median(np.abs(e)):.1f}"
            col[f"{name}: p90 |err| %"] = f"{np.percentile(np.abs(e), 90):.1f}"
            col[f"{name}: median err %"] = f"{np.median(e):+.1f}"
        inv = pd.DataFrame(invented)
        for name in inv.condition.unique():
            s = inv[(inv.method == method) & (inv.condition == name)]["s"]
            col[f"{name}: invented s/channel (mean)"] = f"{s.mean():.2f}"
        col["x real time (1 core, per channel)"] = f"{speed[method][1] / max(speed[method][0], 1e-9):.0f}"
        table[method] = col
    out = pd.DataFrame(table)
    print(f"{args.calls} stereo calls of {CALL_S:g} s per condition, seed {args.seed}; "
          f"noise-only/silent: {args.calls // 2} calls each")
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        print(out.to_string())
    return out


if __name__ == "__main__":
    main()
