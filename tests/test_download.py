"""The RAVDESS and CREMA-D downloads, against a local file server on 127.0.0.1 (never the internet)."""
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

from ser_core.training import download as dl
from ser_core.cli import main, parser
from ser_core.training.data import data_dir
from ser_core.training.download import ChecksumError, download_ravdess, shipped_checksums

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


# ---- CREMA-D -------------------------------------------------------------------------------

CREMA = ["1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TIE_NEU_XX.wav", "1007_MTI_SAD_XX.wav"]
DEMOGRAPHICS = ('"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,"Male","Caucasian","Not Hispanic"\n'
                '1002,21,"Female","Asian","Hispanic"\n1004,30,"Male","Caucasian","Not Hispanic"\n'
                '1005,30,"Male","Caucasian","Not Hispanic"\n1006,30,"Male","Caucasian","Not Hispanic"\n'
                '1007,44,"Male","African American","Not Hispanic"\n1076,25,"Female","Caucasian","Not Hispanic"\n')
SUMMARY = ('"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"\n'
           '"1","1001_DFA_ANG_XX","A","47.3","A","41.8","A","41.5"\n'
           '"2","1001_IEO_HAP_HI","F:H","54.75:61.00","H","79.25","H","77.5"\n'
           '"3","1002_TIE_NEU_XX","N","86","N","77.44","N","84.6"\n')


def _crema_wav(seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, speechlike(0.25 + 0.05 * seed, sr=16000, seed=seed), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list  # set per server

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def crema_site(tmp_path, monkeypatch):
    """Fake CREMA-D upstream on 127.0.0.1 (AudioWAV/ + metadata) with its checksum table shipped
    in place of the real one; yields (audio_url, meta_url, requests, site, sums)."""
    site = tmp_path / "site"
    (site / "AudioWAV").mkdir(parents=True)
    (site / "meta" / "processedResults").mkdir(parents=True)
    (site / "meta" / "VideoDemographics.csv").write_text(DEMOGRAPHICS)
    (site / "meta" / "processedResults" / "summaryTable.csv").write_text(SUMMARY)
    sums = {}
    for i, name in enumerate(CREMA):
        data = _crema_wav(i)
        (site / "AudioWAV" / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    # a known upstream quirk: in the table, never served, and it must not be fetched
    sums["1076_MTI_SAD_XX.wav"] = "2" * 64
    table = tmp_path / "crema_d_sha256.csv"
    table.write_text("file,sha256\n" + "".join(f"{n},{d}\n" for n, d in sorted(sums.items())))
    monkeypatch.setattr(dl, "CREMA_D_CHECKSUMS", table)
    requests: list[str] = []
    handler = functools.partial(type("H", (_LoggingHandler,), {"requests": requests}), directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    yield f"{base}/AudioWAV", f"{base}/meta", requests, site, sums
    httpd.shutdown()


def _ser_download_crema(out, audio_url, meta_url, *extra):
    return main(["download", "--corpus", "crema_d", "--out", str(out), "--url", audio_url,
                 "--meta-url", meta_url, "--jobs", "2", *extra])


def test_crema_d_download_writes_flac_and_manifest(crema_site, tmp_path):
    audio_url, meta_url, requests, site, sums = crema_site
    assert _ser_download_crema(tmp_path / "data", audio_url, meta_url) == 0
    root = tmp_path / "data" / "crema_d"
    df = pd.read_csv(root / "manifest.csv", keep_default_na=False)
    assert list(df.columns) == dl.CREMA_D_COLUMNS
    assert list(df["path"]) == [f"audio/{n[:-4]}.flac" for n in CREMA]
    assert list(df["speaker"]) == [1001, 1001, 1002, 1007]
    assert list(df["sex"]) == ["male", "male", "female", "male"] and list(df["age"]) == [51, 51, 21, 44]
    assert list(df["race"])[2] == "Asian" and list(df["ethnicity"])[2] == "Hispanic"
    assert list(df["emotion"]) == ["angry", "happy", "neutral", "sad"]
    assert list(df["level"]) == ["unspecified", "high", "unspecified", "unspecified"]
    assert list(df["sentence_code"]) == ["DFA", "IEO", "TIE", "MTI"]
    assert df["sentence"][1] == "It's eleven o'clock"
    assert list(df["voice_vote"]) == ["angry", "fearful:happy", "neutral", ""]  # 1007 not in the summary
    # folds: per sex, actors by id dealt round-robin (males 1001,1004,1005,1006,1007 -> 1,2,3,4,1)
    assert list(df["fold"]) == [1, 1, 1, 1]
    assert dl.crema_d_folds({1001: "male", 1004: "male", 1005: "male", 1006: "male", 1007: "male",
                             1002: "female", 1076: "female"}) == {
        1001: 1, 1004: 2, 1005: 3, 1006: 4, 1007: 1, 1002: 1, 1076: 2}
    assert list(df["original_sha256"]) == [sums[n] for n in CREMA]
    assert not any("1076" in r for r in requests)  # the silent quirk is left out, not fetched
    for name, rel in zip(CREMA, df["path"]):  # lossless: the very same 16-bit samples
        info = sf.info(root / rel)
        assert info.format == "FLAC" and info.subtype == "PCM_16" and info.samplerate == 16000 and info.channels == 1
        y, _ = sf.read(root / rel, dtype="int16")
        ref, _ = sf.read(site / "AudioWAV" / name, dtype="int16")
        np.testing.assert_array_equal(y, ref)
    assert df["duration_s"][0] == pytest.approx(0.25, abs=1e-3)
    assert not list((tmp_path / "data").rglob("*.part"))


def test_crema_d_speaker_subset(crema_site, tmp_path):
    audio_url, meta_url, requests, _, _ = crema_site
    assert _ser_download_crema(tmp_path / "data", audio_url, meta_url, "--speakers", "1002,1007") == 0
    df = pd.read_csv(tmp_path / "data" / "crema_d" / "manifest.csv")
    assert list(df["speaker"]) == [1002, 1007]
    assert sorted(r for r in requests if r.endswith(".wav")) == ["/AudioWAV/1002_TIE_NEU_XX.wav",
                                                                 "/AudioWAV/1007_MTI_SAD_XX.wav"]
    assert dl.parse_speakers("all") is None and dl.parse_speakers("1003,1001-1002") == (1001, 1002, 1003)
    with pytest.raises(SystemExit, match="unknown CREMA-D speakers"):
        _ser_download_crema(tmp_path / "data", audio_url, meta_url, "--speakers", "1050")


def test_crema_d_corrupted_file_fails_naming_it(crema_site, tmp_path):
    audio_url, meta_url, _, site, _ = crema_site
    bad = site / "AudioWAV" / CREMA[2]
    bad.write_bytes(bad.read_bytes()[:-10] + b"\0" * 10)
    with pytest.raises(dl.ChecksumError, match=f"{CREMA[2]}.*sha256"):
        dl.download_crema_d(tmp_path / "data", base_url=audio_url, meta_url=meta_url, jobs=1)
    cache = tmp_path / "data" / "downloads" / "crema_d" / "AudioWAV"
    assert not (cache / CREMA[2]).exists() and not list(cache.glob("*.part"))  # never renamed into place
    assert not (tmp_path / "data" / "crema_d" / "manifest.csv").exists()
    with pytest.raises(SystemExit, match=CREMA[2]):  # the CLI says it too, without a traceback
        _ser_download_crema(tmp_path / "data", audio_url, meta_url)


def test_crema_d_missing_file_fails_naming_it(crema_site, tmp_path):
    audio_url, meta_url, _, site, _ = crema_site
    (site / "AudioWAV" / CREMA[3]).unlink()
    with pytest.raises(dl.ChecksumError, match=f"{CREMA[3]}: missing upstream, HTTP 404"):
        dl.download_crema_d(tmp_path / "data", base_url=audio_url, meta_url=meta_url, jobs=1)


def test_crema_d_rerun_fetches_nothing_new(crema_site, tmp_path):
    audio_url, meta_url, requests, _, _ = crema_site
    first = dl.download_crema_d(tmp_path / "data", base_url=audio_url, meta_url=meta_url)
    assert sum(r.endswith(".wav") for r in requests) == len(CREMA)
    before = first.read_text()
    requests.clear()
    second = dl.download_crema_d(tmp_path / "data", base_url=audio_url, meta_url=meta_url)
    assert requests == [] and second.read_text() == before
    # a cached file damaged on disk fails its check and only it is fetched again
    cached = tmp_path / "data" / "downloads" / "crema_d" / "AudioWAV" / CREMA[1]
    cached.write_bytes(b"RIFF broken")
    dl.download_crema_d(tmp_path / "data", base_url=audio_url, meta_url=meta_url)
    assert requests == [f"/AudioWAV/{CREMA[1]}"] and second.read_text() == before


def test_ravdess_stays_the_default_corpus():
    args = parser().parse_args(["download", "--out", "x"])
    assert args.corpus == "ravdess" and args.url is None and args.channels == ["speech", "song"]


def test_shipped_crema_d_checksums_cover_the_corpus():
    sums = dl.shipped_checksums(dl.CREMA_D_CHECKSUMS)
    assert len(sums) == 7442 and len({n[:4] for n in sums}) == 91
    assert all(len(d) == 64 for d in sums.values())
    assert {f"{n}.wav" for n in dl.CREMA_D_EXCLUDED} <= set(sums)
    root = data_dir()
    if root is None or not (root / "crema_d" / "manifest.csv").exists():
        pytest.skip("shared CREMA-D copy not found")
    manifest = pd.read_csv(root / "crema_d" / "manifest.csv")
    for path, digest in zip(manifest["path"], manifest["original_sha256"]):
        assert sums[path.split("/")[-1].replace(".flac", ".wav")] == digest
    assert not {p.split("/")[-1][:-5] for p in manifest["path"]} & dl.CREMA_D_EXCLUDED
