"""Build the example stereo calls in examples/calls/ from RAVDESS clips of the fold-1 actors.

Each call alternates an agent (channel 0) and a customer (channel 1), one trimmed
RAVDESS sentence per turn, with pauses and an occasional overlap, then goes through a
telephone channel: 300-3400 Hz band-pass, 8 kHz, G.711 mu-law WAV. The ground-truth
timeline is written to examples/calls/truth.csv (call_id, role, channel, start_s,
end_s, emotion, source), and agents.csv says which agent took each call.

The actors are those of fold 1 (01, 11, 20, 21): held out by any model trained with
`--folds 2,3,4,5,6`; the bundled model, trained on all of RAVDESS, has heard them.
RAVDESS (Livingstone & Russo 2018) is CC BY-NC-SA 4.0; so are these derived calls.

    python examples/make_calls.py [--data DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import butter, sosfiltfilt

from ser_core.audio import load_audio, trim_silence
from ser_core.training.data import data_dir, ravdess_manifest

OUT = Path(__file__).resolve().parent / "calls"
SR = 8000
# call_id: (agent actor, customer actor, agent emotions, customer emotion arc), one entry per turn
CALLS = {
    "call_001": (20, 1, ["neutral", "calm", "neutral", "calm", "happy", "calm"],
                 ["angry", "angry", "angry", "neutral", "neutral", "calm"]),
    "call_002": (11, 21, ["calm", "neutral", "calm", "neutral", "calm", "neutral"],
                 ["neutral", "neutral", "sad", "sad", "sad", "sad"]),
    "call_003": (21, 11, ["happy", "neutral", "happy", "calm", "happy", "happy"],
                 ["happy", "surprised", "happy", "happy", "calm", "happy"]),
    "call_004": (1, 20, ["neutral", "calm", "calm", "neutral", "calm", "neutral"],
                 ["fearful", "fearful", "angry", "disgust", "angry", "angry"]),
}


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    sos = butter(6, [300, 3400], btype="bandpass", fs=sr, output="sos")
    return sosfiltfilt(sos, y).astype(np.float32)


def build_call(clips: pd.DataFrame, agent: int, customer: int, agent_emotions, customer_emotions, rng):
    tracks = [[], []]
    truth = []
    t = 0.5
    pick_used: set[str] = set()

    def pick(actor: int, emotion: str) -> tuple[np.ndarray, str]:
        pool = clips[(clips["actor"] == actor) & (clips["emotion"] == emotion) & ~clips["path"].isin(pick_used)]
        row = pool.iloc[rng.integers(len(pool))]
        pick_used.add(row["path"])
        y, _ = load_audio(row["path"], sr=SR)
        y, _ = trim_silence(y, top_db=30.0, frame_length=256, hop_length=64)
        return y, Path(row["path"]).name

    for turn in range(len(agent_emotions) + len(customer_emotions)):
        ch = turn % 2
        actor, emotion = (agent, agent_emotions[turn // 2]) if ch == 0 else (customer, customer_emotions[turn // 2])
        y, source = pick(actor, emotion)
        start = t - (0.4 if turn and rng.random() < 0.2 else 0.0)  # some barge-in overlap
        tracks[ch].append((int(start * SR), y))
        truth.append({"role": "agent" if ch == 0 else "customer", "channel": ch, "start_s": round(start, 3),
                      "end_s": round(start + len(y) / SR, 3), "emotion": emotion, "source": source})
        t = start + len(y) / SR + rng.uniform(0.3, 1.2)
    n = int((t + 0.5) * SR)
    audio = np.zeros((n, 2), np.float32)
    for ch in (0, 1):
        for s, y in tracks[ch]:
            audio[s:s + len(y), ch] += 0.5 * y / np.max(np.abs(y))
    rng_noise = 10 ** (-45 / 20) * rng.standard_normal(audio.shape).astype(np.float32)  # line noise
    audio = np.stack([telephone(audio[:, ch] + rng_noise[:, ch], SR) for ch in (0, 1)], axis=1)
    return np.clip(audio, -1, 1), truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="data folder (default: $SER_DATA_DIR or ../shared/data)")
    args = ap.parse_args()
    clips = ravdess_manifest(data_dir(args.data))
    clips = clips[(clips["vocal_channel"] == "speech") & (clips["fold"] == 1)]
    rng = np.random.default_rng(2452)
    OUT.mkdir(exist_ok=True)
    rows = []
    for call_id, (agent, customer, a_emotions, c_emotions) in CALLS.items():
        audio, truth = build_call(clips, agent, customer, a_emotions, c_emotions, rng)
        sf.write(OUT / f"{call_id}.wav", audio, SR, subtype="ULAW")
        rows += [{"call_id": call_id, **r} for r in truth]
        print(f"{call_id}: {len(audio) / SR:.1f} s, {len(truth)} turns")
    pd.DataFrame(rows).to_csv(OUT / "truth.csv", index=False)
    # what a CRM export would hold beside the recordings: which agent took each call
    agents = [{"call_id": c, "agent_id": f"agent_{agent:02d}"} for c, (agent, *_rest) in CALLS.items()]
    pd.DataFrame(agents).to_csv(OUT / "agents.csv", index=False)


if __name__ == "__main__":
    main()
