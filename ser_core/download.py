"""Fetch RAVDESS from Zenodo, verify every file, and lay it out as the project expects.

Each WAV inside the upstream archives is checked against the sha256 shipped in
`ravdess_sha256.csv`; a mismatch or a missing file stops the download. The result is
the layout of the shared data folder: `ravdess/{speech,song}/Actor_XX/*.flac` (16 kHz
mono 16-bit FLAC, soxr very-high-quality resampling) and `ravdess/manifest.csv`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import shutil
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .labels import parse_ravdess_name

ZENODO_URL = "https://zenodo.org/records/1188976/files"
CHANNEL_CODES = {"speech": "01", "song": "02"}  # second field of a RAVDESS file name
ARCHIVES = {"speech": "Audio_Speech_Actors_01-24.zip", "song": "Audio_Song_Actors_01-24.zip"}
CHECKSUMS = Path(__file__).resolve().parent / "ravdess_sha256.csv"
# Speaker-independent folds (EmoBox's RAVDESS protocol): fold -> held-out actors.
FOLDS = {1: (1, 11, 20, 21), 2: (4, 10, 12, 14), 3: (8, 9, 19, 23), 4: (3, 5, 7, 24), 5: (2, 15, 16, 18), 6: (6, 13, 17, 22)}
ACTOR_FOLD = {a: f for f, actors in FOLDS.items() for a in actors}
MANIFEST_COLUMNS = ["path", "actor", "sex", "vocal_channel", "emotion", "emotion_code", "intensity",
                    "statement", "repetition", "duration_s", "fold", "original_sha256"]


class ChecksumError(RuntimeError):
    pass


def shipped_checksums() -> dict[str, str]:
    with open(CHECKSUMS, newline="") as f:
        return {row["file"]: row["sha256"] for row in csv.DictReader(f)}


def fetch(url: str, dest: Path) -> Path:
    """Download `url` to `dest` (via a .part file); an existing `dest` is reused."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
    part.replace(dest)
    return dest


def convert(wav_bytes: bytes, dest: Path, sr: int = 16000) -> float:
    """Down-mix, resample and write 16-bit FLAC; returns the duration in seconds."""
    data, native_sr = sf.read(io.BytesIO(wav_bytes), dtype="float32", always_2d=True)
    y = data.mean(axis=1)
    if native_sr != sr:
        y = soxr.resample(y, native_sr, sr, quality="VHQ")
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dest, np.clip(y, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
    return round(len(y) / sr, 4)


def download_ravdess(
    dest: str | Path,
    base_url: str = ZENODO_URL,
    channels: tuple[str, ...] = ("speech", "song"),
    checksums: dict[str, str] | None = None,
    sample_rate: int = 16000,
) -> Path:
    """Download, verify and convert RAVDESS into `dest/ravdess`; returns the manifest path."""
    dest = Path(dest)
    root = dest / "ravdess"
    expected = shipped_checksums() if checksums is None else checksums
    rows: list[dict] = []
    seen: set[str] = set()
    for channel in channels:
        archive = fetch(f"{base_url}/{ARCHIVES[channel]}", dest / "downloads" / ARCHIVES[channel])
        with zipfile.ZipFile(archive) as zf:
            for member in sorted(zf.namelist()):
                name = Path(member).name
                if not name.endswith(".wav") or name.startswith("."):
                    continue
                if name not in expected:
                    raise ChecksumError(f"{member} in {archive.name} is not a known RAVDESS file")
                data = zf.read(member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != expected[name]:
                    raise ChecksumError(f"{member}: sha256 {digest} != expected {expected[name]}")
                info = parse_ravdess_name(name)
                rel = Path(channel) / f"Actor_{info.actor:02d}" / name.replace(".wav", ".flac")
                duration = convert(data, root / rel, sample_rate)
                seen.add(name)
                rows.append({
                    "path": rel.as_posix(), "actor": info.actor, "sex": "male" if info.actor % 2 else "female",
                    "vocal_channel": info.vocal_channel, "emotion": info.emotion,
                    "emotion_code": int(name.split("-")[2]), "intensity": info.intensity,
                    "statement": info.statement, "repetition": info.repetition, "duration_s": duration,
                    "fold": ACTOR_FOLD[info.actor], "original_sha256": digest,
                })
    codes = {CHANNEL_CODES[c] for c in channels}
    wanted = {n for n in expected if n.split("-")[1] in codes}
    missing = sorted(wanted - seen)
    if missing:
        raise ChecksumError(f"{len(missing)} files missing from the archives, e.g. {missing[:3]}")
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))
    return manifest
