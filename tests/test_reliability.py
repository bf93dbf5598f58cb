"""Issue #27: re-runs that never lose data, unique call identity, strict options and exit
codes, tiling windows, inputs that must not be lost or mislabelled, a quiet log."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike

from pipelines import score_calls as sc
from ser_core import audio
from ser_core.calls import CallInfo, open_audio, segment_call, summarize_call
from ser_core.config import SegmentConfig
from ser_core.labels import EMOTIONS

SR = 8000
DATE = "2026-11-23"


def speech_file(path, seconds=3.0, channels=1, sr=SR, subtype=None, seed=0):
    y = np.zeros((int(seconds * sr), channels), np.float32)
    for ch in range(channels):
        y[int(0.5 * sr):int(2.5 * sr), ch] = speechlike(2.0, sr=sr, amp=0.3, seed=seed + ch)
    sf.write(path, y, sr, subtype=subtype)
    return path


def _row(role, start, end, emotion, valence=0.0):
    return {"role": role, "start_s": start, "end_s": end, "valence": valence,
            **{f"p_{e}": float(e == emotion) for e in EMOTIONS}}


# --- windows and durations ---------------------------------------------------------

def test_split_windows_tile_a_turn_without_near_duplicates():
    win = 2.048
    turn = np.array([[int(14.096 * SR), int(16.160 * SR)]])  # slightly longer than one window
    w = audio.split_windows(turn, SR, win)
    assert len(w) == 2
    assert w[0, 0] == turn[0, 0] and w[-1, 1] == turn[0, 1] and w[0, 1] == w[1, 0]  # tiles, no overlap
    assert np.all(w[:, 1] - w[:, 0] <= int(win * SR)) and abs((w[0, 1] - w[0, 0]) - (w[1, 1] - w[1, 0])) <= 1
    w = audio.split_windows(np.array([[0, 10 * SR], [11 * SR, 12 * SR]]), SR, 4.0)
    np.testing.assert_allclose(w / SR, [(0, 10 / 3), (10 / 3, 20 / 3), (20 / 3, 10), (11, 12)], atol=1e-3)


def test_shares_and_trend_use_the_union_of_time_not_a_sum_over_windows():
    # two near-identical angry windows over 0-2 s (as the old splitter made) and 2 s happy
    segments = [_row("mixed", 0.0, 2.0, "angry"), _row("mixed", 0.02, 2.02, "angry"), _row("mixed", 2.02, 4.02, "happy")]
    row = summarize_call("m", "/m.wav", CallInfo(5.0, SR, 1), segments, {0: np.array([[0.0, 4.02]])},
                         roles=("agent", "customer"), model_id="x", schema_version="2.0")
    assert row["mixed_share_angry"] == pytest.approx(2.02 / 4.02, abs=1e-6)
    assert row["mixed_share_happy"] == pytest.approx(2.0 / 4.02, abs=1e-6)


# --- inputs that must not be lost or mislabelled -------------------------------------

def test_non_finite_samples_are_repaired_and_counted(tmp_path):
    path = tmp_path / "nan.wav"
    y = np.zeros(int(4 * SR), np.float32)
    y[SR:3 * SR] = speechlike(2.0, sr=SR, amp=0.3)
    y[[SR + 10, SR + 500, 2 * SR]] = [np.nan, np.inf, -np.inf]
    sf.write(path, y, SR, subtype="FLOAT")
    with open(path, "rb") as raw, open_audio(raw) as f:
        assert f.samples_repaired == 3 and not f.truncated
        segs, regions = segment_call(f, SegmentConfig(), max_segment_s=2.048)
        assert segs and regions[0][0, 0] == pytest.approx(1.0, abs=0.1)
        f.seek(0)
        assert np.isfinite(f.read(always_2d=True)).all()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_file_cut_short_is_flagged_as_truncated(tmp_path, fmt):
    whole = speech_file(tmp_path / f"whole.{fmt.lower()}", seconds=4.0)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with open(whole, "rb") as raw, open_audio(raw) as f:
        assert not f.truncated and f.frames == 4 * SR
    with open(cut, "rb") as raw, open_audio(raw) as f:
        assert f.truncated and 0 < f.frames < 4 * SR
        f.seek(0)
        assert f.read(always_2d=True).shape[0] == f.frames  # everything it claims can be read


def test_errors_read_like_sentences(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_bytes(b"call notes, not audio\n" * 20)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with open(tmp_path / "empty.wav", "rb") as raw, pytest.raises(audio.EmptyFileError) as e:
        open_audio(raw)
    assert str(e.value) == "empty file (0 bytes)" and e.value.code == "empty_file"
    with open(tmp_path / "notes.wav", "rb") as raw, pytest.raises(audio.UnreadableAudioError) as e:
        open_audio(raw)
    assert str(e.value) == "not a supported audio file (format not recognised)"
    with open(tmp_path / "corrupt.wav", "rb") as raw, pytest.raises(audio.UnreadableAudioError) as e:
        open_audio(raw)
    assert str(e.value).startswith("not a supported audio file (") and "<_io" not in str(e.value)


def test_channels_beyond_the_roles_are_not_scored(tmp_path):
    path = speech_file(tmp_path / "six.wav", channels=6)
    with open(path, "rb") as raw, open_audio(raw) as f:
        segs, regions = segment_call(f, SegmentConfig(roles=("agent", "customer")), max_segment_s=2.048)
    assert {s.channel for s in segs} == {0, 1} and set(regions) == {0, 1}
    assert {s.role for s in segs} == {"agent", "customer"}
    assert [s.index for s in segs] == list(range(len(segs)))


def test_a_mono_call_does_not_pretend_to_know_the_customer():
    segments = [_row("mixed", 0.0, 2.0, "angry", -0.5), _row("mixed", 2.0, 3.0, "happy", 0.5)]
    row = summarize_call("m", "/m.wav", CallInfo(3.0, SR, 1), segments, {0: np.array([[0.0, 3.0]])},
                         roles=("agent", "customer"), model_id="x", schema_version="2.0")
    for col in ("customer_talk_s", "agent_talk_s", "customer_segments", "customer_share_angry", "customer_role",
                "customer_dominant_emotion", "customer_valence_trend", "satisfaction_proxy"):
        assert row[col] is None, col
    assert row["mixed_talk_s"] == pytest.approx(3.0) and row["mixed_share_angry"] == pytest.approx(2 / 3)


# --- identity, manifest, options -----------------------------------------------------

def test_call_ids_are_paths_under_the_glob_root_and_unique():
    root = sc.input_root("/data/calls/*/*.wav")
    assert root == "/data/calls/"
    refs = sc.assign_calls(["/data/calls/site1/call.wav", "/data/calls/site2/call.wav"], root, None)
    assert [(r.call_id, r.call_name) for r in refs] == [("site1/call", "call"), ("site2/call", "call")]
    refs = sc.assign_calls(["/d/x.wav", "/d/x.flac", "/d/y.wav"], "/d/", None)
    assert [r.conflict is not None for r in refs] == [True, True, False]  # one id, two files: both refused


def test_manifest_ids_and_metadata_and_duplicates(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,call_id,agent_id,queue\nsite1/call.wav,C-1,A7,billing\n/data/calls/site2/call.wav,,A8,\n")
    manifest = sc.read_manifest(str(m))
    refs = sc.assign_calls(["/data/calls/site1/call.wav", "/data/calls/site2/call.wav"], "/data/calls/", manifest)
    assert [r.call_id for r in refs] == ["C-1", "site2/call"]
    assert [dict(r.metadata) for r in refs] == [{"agent_id": "A7", "queue": "billing"}, {"agent_id": "A8", "queue": None}]
    m.write_text("path,call_id\na.wav,C-1\nb.wav,C-1\n")
    with pytest.raises(sc.UsageError, match="C-1"):
        sc.read_manifest(str(m))


@pytest.mark.parametrize("bad", [["--bogus=1"], ["--date=yesterday"], ["--overlap_s=0.5"]])
def test_unknown_options_and_bad_dates_exit_2(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as e:
        sc.main([f"--input={tmp_path}/*.wav", f"--output={tmp_path}/out", *bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert bad[0].split("=")[0] in err or "yesterday" in err


# --- the job: re-runs, exit codes, columns, log -------------------------------------

def table(out, name, date=DATE):
    return pd.read_parquet(out / name / f"date={date}")


def snapshot(out):
    return {t: table(out, t).sort_values(list(table(out, t).columns[:3])).reset_index(drop=True)
            for t in ("segments", "calls", "errors")}


def test_reruns_merge_by_call_and_never_lose_a_date(bundle, tmp_path, capsys):
    day = tmp_path / "day"
    day.mkdir()
    speech_file(day / "a.wav", channels=2)
    speech_file(day / "b.wav", seed=3)
    out = tmp_path / "out"
    base = [f"--output={out}", f"--model={bundle}", f"--date={DATE}"]
    assert sc.main([f"--input={day}/*.wav", *base]) == 0
    first = snapshot(out)
    assert sorted(first["calls"].call_id) == ["a", "b"]
    # a late recording: added, the others stay
    speech_file(day / "c.wav", seed=5)
    (day / "d.wav").write_bytes(b"")
    assert sc.main([f"--input={day}/[cd].wav", *base]) == 0
    assert sorted(table(out, "calls").call_id) == ["a", "b", "c"] and list(table(out, "errors").call_id) == ["d"]
    assert "errors by code: empty_file 1" in capsys.readouterr().out
    # re-scoring one call replaces its own rows in all three tables, nothing else
    assert sc.main([f"--input={day}/a.wav", *base]) == 0
    seg = table(out, "segments")
    assert len(seg[seg.call_id == "a"]) == len(first["segments"][first["segments"].call_id == "a"])
    assert sorted(table(out, "calls").call_id) == ["a", "b", "c"]
    # nothing matched: exit 3, tables untouched
    before = snapshot(out)
    assert sc.main([f"--input={day}/nothing*.wav", *base]) == 3
    after = snapshot(out)
    for t in before:
        pd.testing.assert_frame_equal(before[t], after[t])
    # a failed run leaves the previous tables readable and unchanged
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sc.SummarizeFn, "process", lambda self, item: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(Exception):
            sc.run([f"--input={day}/b.wav", *base])
    for t in before:
        pd.testing.assert_frame_equal(before[t], snapshot(out)[t])
    # --replace_partition replaces the whole date
    assert sc.main([f"--input={day}/c.wav", "--replace_partition", *base]) == 0
    assert list(table(out, "calls").call_id) == ["c"] and table(out, "errors").empty
    assert [p.name for p in (out / "calls" / f"date={DATE}").iterdir()] == ["part-0.parquet"]


def test_job_columns_identity_manifest_and_inputs(bundle, tmp_path, capsys):
    d = tmp_path / "calls"
    (d / "site1").mkdir(parents=True)
    (d / "site2").mkdir()
    speech_file(d / "site1" / "call.wav", channels=2)
    speech_file(d / "site2" / "call.wav", channels=6, seed=2)
    y = np.zeros(int(3 * SR), np.float32)
    y[SR // 2:SR // 2 + 2 * SR] = speechlike(2.0, sr=SR, amp=0.3)
    y[[SR, SR + 7]] = np.nan
    sf.write(d / "site1" / "nan.wav", y, SR, subtype="FLOAT")
    sf.write(d / "site1" / "silent.wav", np.zeros((SR * 2, 2), np.float32), SR)
    whole = speech_file(d / "site2" / "cut.wav", seconds=4.0, seed=4).read_bytes()
    (d / "site2" / "cut.wav").write_bytes(whole[: len(whole) * 3 // 4])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,call_id,agent_id,started_at\nsite1/call.wav,C-100,A7,2026-11-23T09:00:00\n")
    out = tmp_path / "out"
    code = sc.main([f"--input={d}/*/*.wav", f"--output={out}", f"--model={bundle}", f"--date={DATE}",
                    f"--manifest={manifest}"])
    log = capsys.readouterr()
    assert code == 0
    calls = table(out, "calls").set_index("call_id")
    assert sorted(calls.index) == ["C-100", "site1/nan", "site2/call", "site2/cut"]
    assert calls.loc["C-100", "call_name"] == "call" and calls.loc["site2/call", "call_name"] == "call"
    assert calls.loc["C-100", "agent_id"] == "A7" and calls.loc["C-100", "started_at"] == "2026-11-23T09:00:00"
    assert pd.isna(calls.loc["site2/call", "agent_id"])
    assert calls.loc["site1/nan", "samples_repaired"] == 2 and calls.loc["C-100", "samples_repaired"] == 0
    assert bool(calls.loc["site2/cut", "truncated"]) and not bool(calls.loc["C-100", "truncated"])
    assert calls.loc["site2/call", "channels_ignored"] == 4 and calls.loc["C-100", "channels_ignored"] == 0
    assert pd.isna(calls.loc["site1/nan", "customer_talk_s"]) and calls.loc["site1/nan", "mixed_talk_s"] > 0
    seg = table(out, "segments")
    assert set(seg[seg.call_id == "site2/call"].channel) == {0, 1}
    assert set(seg.call_name) == {"call", "nan", "cut"}
    errors = table(out, "errors")
    assert list(errors.message) == ["no speech (silent recording)"] and list(errors.call_id) == ["site1/silent"]
    assert "reconciliation: files matched 5, calls written 4, errors written 1" in log.out
    assert "errors by code: no_speech 1" in log.out
    assert "Converting string literal type hint" not in log.err and "apitools" not in log.err


def test_reconciliation_mismatch_exits_4(monkeypatch, bundle, tmp_path):
    speech_file(tmp_path / "a.wav")
    monkeypatch.setattr(sc, "counters", lambda result: {"files_matched": 2, "calls_written": 1, "errors_written": 0})
    assert sc.main([f"--input={tmp_path}/*.wav", f"--output={tmp_path}/out", f"--model={bundle}", f"--date={DATE}"]) == 4
