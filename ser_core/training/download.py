"""Fetch RAVDESS (Zenodo) or CREMA-D (GitHub, Git LFS), verify every file, lay it out as the project expects.

Every WAV is checked against the sha256 shipped in the package (`ravdess_sha256.csv`,
`crema_d_sha256.csv`); a mismatch or a missing file stops the download with the file named.
Downloads go to a `.part` name and are renamed into `OUT/downloads/` only once verified; a
file already there and matching its sha256 is not fetched again, so an interrupted run resumes.

RAVDESS: `ravdess/{speech,song}/Actor_XX/*.flac` (16 kHz mono 16-bit FLAC, soxr very-high-quality
resampling) and `ravdess/manifest.csv`.

CREMA-D: `crema_d/audio/<ActorID>_<Sentence>_<Emotion>_<Level>.flac` and `crema_d/manifest.csv`,
the columns of the shared copy (`CREMA_D_COLUMNS`). The upstream WAVs are already 16 kHz mono
16-bit and are stored losslessly (same samples; a file that were not would be down-mixed and
resampled like RAVDESS). sex, age, race, ethnicity come from `VideoDemographics.csv`; `voice_vote`
(the emotion(s) most audio-only raters chose, ':'-joined on a tie) from
`processedResults/summaryTable.csv`. `voice_agreement` is left out: summaryTable has no rater
shares (they are in `tabulatedVotes.csv`, per clip name with a different layout).
Left out, as in the shared copy (known upstream quirks, `CREMA_D_EXCLUDED`): 1076_MTI_SAD_XX
(silent) and both files of each byte-identical pair with different labels (1006_TIE_HAP/NEU,
1013_WSI_DIS/SAD, 1017_IWW_ANG/FEA); they are not fetched.
Folds (`crema_d_folds`): 4 speaker folds balanced by sex, over all actors of VideoDemographics.csv
(not only those fetched, so a speaker's fold never depends on `--speakers`): within each sex,
actors sorted by id are dealt round-robin to folds 1, 2, 3, 4, 1, ... (91 actors: 23/23/23/22,
12 male in each fold, 11/11/11/10 female). These are not the folds of the shared 44-actor copy.
"""
from __future__ import annotations

import csv
import hashlib
import io
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..labels import parse_ravdess_name

HERE = Path(__file__).resolve().parent
ZENODO_URL = "https://zenodo.org/records/1188976/files"
CHANNEL_CODES = {"speech": "01", "song": "02"}  # second field of a RAVDESS file name
ARCHIVES = {"speech": "Audio_Speech_Actors_01-24.zip", "song": "Audio_Song_Actors_01-24.zip"}
CHECKSUMS = HERE / "ravdess_sha256.csv"
# Speaker-independent folds (EmoBox's RAVDESS protocol): fold -> held-out actors.
FOLDS = {1: (1, 11, 20, 21), 2: (4, 10, 12, 14), 3: (8, 9, 19, 23), 4: (3, 5, 7, 24), 5: (2, 15, 16, 18), 6: (6, 13, 17, 22)}
ACTOR_FOLD = {a: f for f, actors in FOLDS.items() for a in actors}
MANIFEST_COLUMNS = ["path", "actor", "sex", "vocal_channel", "emotion", "emotion_code", "intensity",
                    "statement", "repetition", "duration_s", "fold", "original_sha256"]

CREMA_D_URL = "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/AudioWAV"
CREMA_D_META_URL = "https://raw.githubusercontent.com/CheyneyComputerScience/CREMA-D/master"
CREMA_D_CHECKSUMS = HERE / "crema_d_sha256.csv"
CREMA_D_DEMOGRAPHICS = "VideoDemographics.csv"
CREMA_D_VOTES = "processedResults/summaryTable.csv"
CREMA_D_EXCLUDED = frozenset({"1076_MTI_SAD_XX", "1006_TIE_HAP_XX", "1006_TIE_NEU_XX", "1013_WSI_DIS_XX",
                              "1013_WSI_SAD_XX", "1017_IWW_ANG_XX", "1017_IWW_FEA_XX"})
CREMA_D_FOLDS = 4
CREMA_D_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMA_D_VOTE_LETTERS = {code[0]: name for code, name in CREMA_D_EMOTIONS.items()}  # summaryTable's A D F H N S
CREMA_D_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMA_D_SENTENCES = {
    "DFA": "Don't forget a jacket", "IEO": "It's eleven o'clock", "IOM": "I'm on my way to the meeting",
    "ITH": "I think I have a doctor's appointment", "ITS": "I think I've seen this before",
    "IWL": "I would like a new alarm clock", "IWW": "I wonder what this is about",
    "MTI": "Maybe tomorrow it will be cold", "TAI": "The airplane is almost full",
    "TIE": "That is exactly what happened", "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
CREMA_D_COLUMNS = ["path", "speaker", "sex", "age", "race", "ethnicity", "sentence_code", "sentence", "emotion",
                   "level", "voice_vote", "duration_s", "fold", "original_sha256"]


class ChecksumError(RuntimeError):
    """A downloaded file is unknown, does not match its shipped sha256, or is missing upstream."""


def shipped_checksums(table: str | Path = CHECKSUMS) -> dict[str, str]:
    """file name -> sha256 from a shipped table (default: RAVDESS's).

    Parameters
    ----------
    table : path
        A CSV with columns ``file`` and ``sha256`` (`CHECKSUMS`, `CREMA_D_CHECKSUMS`).

    Returns
    -------
    dict of str to str
        WAV file name -> hex sha256.
    """
    with open(table, newline="") as f:
        return {row["file"]: row["sha256"] for row in csv.DictReader(f)}


def check_sha256(name: str, digest: str, expected: dict[str, str], where: str = "") -> str:
    """Raise ChecksumError unless `name` is in `expected` with sha256 `digest`; returns the digest.

    Parameters
    ----------
    name : str
        The file name.
    digest : str
        Its hex sha256.
    expected : dict of str to str
        File name -> hex sha256 (`shipped_checksums`).
    where : str
        Appended to the file name in the error message (e.g. ``" in archive.zip"``).

    Returns
    -------
    str
        `digest`.

    Raises
    ------
    ChecksumError
        If `name` is not in `expected` or its sha256 differs.
    """
    if name not in expected:
        raise ChecksumError(f"{name}{where}: not a known file (not in the shipped checksum list)")
    if digest != expected[name]:
        raise ChecksumError(f"{name}{where}: sha256 {digest} != expected {expected[name]}")
    return digest


def fetch(url: str, dest: Path, expected: dict[str, str] | None = None) -> Path:
    """Download `url` to `dest` via `dest.part`, renamed into place only once verified.

    With `expected` (file name -> sha256), `dest.name` must match it: an existing `dest` that
    matches is reused (not fetched again), one that does not is fetched again, and a download
    that does not match raises ChecksumError (the .part is removed). Without it, an existing
    `dest` is reused as is. An HTTP error (e.g. 404, the file missing upstream) raises
    ChecksumError naming the file.

    Parameters
    ----------
    url : str
        What to download.
    dest : Path
        Where it goes (parent folders are created).
    expected : dict of str to str, optional
        File name -> hex sha256.

    Returns
    -------
    Path
        `dest`.

    Raises
    ------
    ChecksumError
        If the download does not match `expected`, or the server answers with an HTTP error.
    """
    name = dest.name
    if dest.exists():
        if expected is None or hashlib.sha256(dest.read_bytes()).hexdigest() == expected.get(name):  # small files
            return dest
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        if expected is not None:
            check_sha256(name, h.hexdigest(), expected, f" (from {url})")
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{name}: missing upstream, HTTP {e.code} for {url}") from e
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest


def _write_flac(y: np.ndarray, sr: int, dest: Path) -> None:
    """Write 16-bit FLAC via a temporary name (no half-written file under the final name)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    sf.write(tmp, y, sr, format="FLAC", subtype="PCM_16")
    tmp.replace(dest)


def convert(wav_bytes: bytes, dest: Path, sr: int = 16000) -> float:
    """Down-mix, resample and write 16-bit FLAC; returns the duration in seconds.

    A file already at `sr`, mono, 16-bit is stored losslessly (the same integer samples).

    Parameters
    ----------
    wav_bytes : bytes
        An audio file (WAV) in memory, any rate and channel count.
    dest : Path
        The FLAC to write (parent folders are created).
    sr : int
        Target sample rate in Hz (soxr very-high-quality resampling where it differs).

    Returns
    -------
    float
        Duration of the written audio in seconds, rounded to 0.1 ms.
    """
    info = sf.info(io.BytesIO(wav_bytes))
    if info.samplerate == sr and info.channels == 1 and info.subtype == "PCM_16":
        y, _ = sf.read(io.BytesIO(wav_bytes), dtype="int16")
        _write_flac(y, sr, dest)
        return round(len(y) / sr, 4)
    data, native_sr = sf.read(io.BytesIO(wav_bytes), dtype="float32", always_2d=True)
    y = data.mean(axis=1)
    if native_sr != sr:
        y = soxr.resample(y, native_sr, sr, quality="VHQ")
    _write_flac(np.clip(y, -1.0, 1.0), sr, dest)
    return round(len(y) / sr, 4)


def _write_manifest(path: Path, columns: list[str], rows: list[dict]) -> Path:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))
    tmp.replace(path)
    return path


def download_ravdess(
    dest: str | Path,
    *,
    base_url: str = ZENODO_URL,
    channels: tuple[str, ...] = ("speech", "song"),
    checksums: dict[str, str] | None = None,
    sample_rate: int = 16000,
) -> Path:
    """Download, verify and convert RAVDESS into `dest/ravdess`; returns the manifest path.

    Parameters
    ----------
    dest : path
        The data folder; the archives are kept in ``dest/downloads/``.
    base_url : str
        Where the Zenodo archives (`ARCHIVES`) are.
    channels : tuple of str
        Vocal channels to fetch: ``speech``, ``song``.
    checksums : dict of str to str, optional
        WAV file name -> hex sha256; default: the shipped `CHECKSUMS`.
    sample_rate : int
        Sample rate of the FLACs in Hz.

    Returns
    -------
    Path
        ``dest/ravdess/manifest.csv``, columns `MANIFEST_COLUMNS`.

    Raises
    ------
    ChecksumError
        If a WAV is unknown or does not match its sha256, a checksummed file of `channels` is
        missing from the archives, or a download fails with an HTTP error.
    """
    dest = Path(dest)
    root = dest / "ravdess"
    expected = shipped_checksums(CHECKSUMS) if checksums is None else checksums
    rows: list[dict] = []
    seen: set[str] = set()
    for channel in channels:
        archive = fetch(f"{base_url}/{ARCHIVES[channel]}", dest / "downloads" / ARCHIVES[channel])
        with zipfile.ZipFile(archive) as zf:
            for member in sorted(zf.namelist()):
                name = Path(member).name
                if not name.endswith(".wav") or name.startswith("."):
                    continue
                data = zf.read(member)
                digest = check_sha256(name, hashlib.sha256(data).hexdigest(), expected, f" in {archive.name}")
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
    return _write_manifest(root / "manifest.csv", MANIFEST_COLUMNS, rows)


def parse_speakers(spec: str | None) -> tuple[int, ...] | None:
    """`--speakers`: None/'all' -> None (every actor); '1001,1005-1007' -> (1001, 1005, 1006, 1007).

    Parameters
    ----------
    spec : str, optional
        Comma-separated actor ids and inclusive ranges, or ``all``.

    Returns
    -------
    tuple of int or None
        The actor ids, sorted and unique; None for every actor.

    Raises
    ------
    ValueError
        If an item is not an id or a range of ids.
    """
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"bad --speakers item {part!r}: give actor ids like 1001, ranges like 1001-1010, or all")
        out.update(range(first, last + 1))
    return tuple(sorted(out))


def crema_d_folds(sex_by_speaker: dict[int, str], n_folds: int = CREMA_D_FOLDS) -> dict[int, int]:
    """Speaker -> fold 1..n: within each sex, actors sorted by id dealt round-robin (deterministic).

    Parameters
    ----------
    sex_by_speaker : dict of int to str
        Actor id -> sex.
    n_folds : int
        Number of folds.

    Returns
    -------
    dict of int to int
        Actor id -> fold, 1..`n_folds`.
    """
    folds: dict[int, int] = {}
    for sex in sorted(set(sex_by_speaker.values())):
        for i, speaker in enumerate(sorted(s for s, x in sex_by_speaker.items() if x == sex)):
            folds[speaker] = i % n_folds + 1
    return folds


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def download_crema_d(
    dest: str | Path,
    *,
    base_url: str = CREMA_D_URL,
    meta_url: str = CREMA_D_META_URL,
    speakers: tuple[int, ...] | None = None,
    checksums: dict[str, str] | None = None,
    jobs: int = 4,
) -> Path:
    """Download, verify and store CREMA-D into `dest/crema_d`; returns the manifest path.

    Raw WAVs are kept, verified, in `dest/downloads/crema_d/AudioWAV/` (a re-run reuses them).

    Parameters
    ----------
    dest : path
        The data folder.
    base_url : str
        Where the WAVs are (``<base_url>/<name>.wav``).
    meta_url : str
        Where `CREMA_D_DEMOGRAPHICS` and `CREMA_D_VOTES` are.
    speakers : tuple of int, optional
        Actor ids to fetch (`parse_speakers`); default: all 91.
    checksums : dict of str to str, optional
        WAV file name -> hex sha256; default: the shipped `CREMA_D_CHECKSUMS`.
    jobs : int
        Parallel downloads.

    Returns
    -------
    Path
        ``dest/crema_d/manifest.csv``, columns `CREMA_D_COLUMNS`.

    Raises
    ------
    ValueError
        If a speaker is not a CREMA-D actor.
    ChecksumError
        If a WAV does not match its sha256, a speaker is missing from the demographics,
        or a download fails with an HTTP error.
    """
    dest = Path(dest)
    root = dest / "crema_d"
    cache = dest / "downloads" / "crema_d"
    expected = shipped_checksums(CREMA_D_CHECKSUMS) if checksums is None else checksums
    demographics = _read_csv(fetch(f"{meta_url}/{CREMA_D_DEMOGRAPHICS}", cache / Path(CREMA_D_DEMOGRAPHICS).name))
    people = {int(r["ActorID"]): r for r in demographics}
    sex = {a: r["Sex"].strip().lower() for a, r in people.items()}
    fold = crema_d_folds(sex)
    votes = {r["FileName"]: r["VoiceVote"] for r in _read_csv(fetch(f"{meta_url}/{CREMA_D_VOTES}",
                                                                        cache / Path(CREMA_D_VOTES).name))}

    known = sorted({int(n[:4]) for n in expected})
    wanted = known if speakers is None else sorted(speakers)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown CREMA-D speakers {unknown} (the actors are {known[0]}-{known[-1]})")
    no_meta = sorted(set(wanted) - set(people))
    if no_meta:
        raise ChecksumError(f"speakers {no_meta} are not in {CREMA_D_DEMOGRAPHICS}")
    chosen = set(wanted)
    names = sorted(n for n in expected
                   if int(n[:4]) in chosen and Path(n).stem not in CREMA_D_EXCLUDED)

    def one(name: str) -> dict:
        wav = fetch(f"{base_url}/{name}", cache / "AudioWAV" / name, expected)
        stem = Path(name).stem
        speaker, sentence, emotion, level = stem.split("_")
        rel = Path("audio") / f"{stem}.flac"
        duration = convert(wav.read_bytes(), root / rel)
        votes_here = votes.get(stem, "")
        person = people[int(speaker)]
        return {
            "path": rel.as_posix(), "speaker": int(speaker), "sex": sex[int(speaker)], "age": int(person["Age"]),
            "race": person["Race"], "ethnicity": person["Ethnicity"], "sentence_code": sentence,
            "sentence": CREMA_D_SENTENCES[sentence], "emotion": CREMA_D_EMOTIONS[emotion],
            "level": CREMA_D_LEVELS[level],
            "voice_vote": ":".join(CREMA_D_VOTE_LETTERS.get(v, v) for v in votes_here.split(":") if v),
            "duration_s": duration, "fold": fold[int(speaker)], "original_sha256": expected[name],
        }

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, n) for n in names]
        try:
            rows = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return _write_manifest(root / "manifest.csv", CREMA_D_COLUMNS, rows)
