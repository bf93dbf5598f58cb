"""The RAVDESS download, against a local file server (never the internet)."""
import functools
import hashlib
import http.server
import io
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike

from ser_core.download import ChecksumError, download_ravdess, shipped_checksums

NAMES = ["03-01-05-02-01-01-01.wav", "03-01-01-01-02-02-12.wav"]


def _wav_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.stack([speechlike(0.5, sr=48000, seed=seed)] * 2, axis=1), 48000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture()
def server(tmp_path):
    """Serve a fake `Audio_Speech_Actors_01-24.zip` on 127.0.0.1; yields (url, checksums)."""
    site = tmp_path / "site"
    site.mkdir()
    sums = {}
    with zipfile.ZipFile(site / "Audio_Speech_Actors_01-24.zip", "w") as zf:
        for i, name in enumerate(NAMES):
            data = _wav_bytes(i)
            sums[name] = hashlib.sha256(data).hexdigest()
            zf.writestr(f"Actor_{name[-6:-4]}/{name}", data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", sums
    httpd.shutdown()


def test_download_verifies_converts_and_writes_manifest(server, tmp_path):
    url, sums = server
    manifest = download_ravdess(tmp_path / "data", base_url=url, channels=("speech",), checksums=sums)
    df = pd.read_csv(manifest)
    assert list(df["path"]) == ["speech/Actor_01/03-01-05-02-01-01-01.flac", "speech/Actor_12/03-01-01-01-02-02-12.flac"]
    assert list(df["emotion"]) == ["angry", "neutral"] and list(df["fold"]) == [1, 2]
    assert list(df["sex"]) == ["male", "female"]
    y, sr = sf.read(manifest.parent / df["path"][0])
    info = sf.info(manifest.parent / df["path"][0])
    assert sr == 16000 and y.ndim == 1 and info.format == "FLAC" and info.subtype == "PCM_16"
    assert df["duration_s"][0] == pytest.approx(0.5, abs=1e-3)


def test_download_rejects_a_wrong_checksum(server, tmp_path):
    url, sums = server
    bad = {**sums, NAMES[0]: "0" * 64}
    with pytest.raises(ChecksumError, match="sha256"):
        download_ravdess(tmp_path / "data", base_url=url, channels=("speech",), checksums=bad)


def test_download_reports_missing_files(server, tmp_path):
    url, sums = server
    more = {**sums, "03-01-02-01-01-01-03.wav": "1" * 64}
    with pytest.raises(ChecksumError, match="missing"):
        download_ravdess(tmp_path / "data", base_url=url, channels=("speech",), checksums=more)


def test_shipped_checksums_cover_the_corpus(corpus_root):
    sums = shipped_checksums()
    manifest = pd.read_csv(corpus_root / "manifest.csv")
    assert len(sums) == 2452
    for path, digest in zip(manifest["path"], manifest["original_sha256"]):
        assert sums[path.split("/")[-1].replace(".flac", ".wav")] == digest
