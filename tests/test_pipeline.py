"""The Beam job: each PTransform with TestPipeline + assert_that, then the whole job."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import speechlike

from pipelines import score_calls as sc
from schemas import CALLS, ERRORS, SCHEMA_VERSION, SEGMENTS
from ser_core.cli import main
from ser_core.config import FeatureConfig, SegmentConfig
from ser_core.labels import EMOTIONS

SR = 8000
AGENT = [(0.5, 2.0), (4.0, 5.5)]
CUSTOMER = [(2.3, 3.8), (5.0, 6.5)]
TOL = 0.1


def real_speech(seconds, sr, seed):
    """`seconds` of real speech (RAVDESS clips trimmed to their speech, back to back) at
    `sr`: the VAD segmenter (#27) finds speech, not the harmonic tones of `speechlike`."""
    from ser_core.audio import load_audio, resample, trim_silence
    from ser_core.training.data import data_dir

    root = data_dir()
    if root is None or not (root / "ravdess" / "speech").is_dir():
        pytest.skip("RAVDESS not found: set SER_DATA_DIR")
    paths = sorted((root / "ravdess" / "speech").glob("Actor_0*/*.flac"))
    rng = np.random.default_rng(seed)
    out = np.zeros(0, np.float32)
    while out.size < int(seconds * sr):
        y, _ = load_audio(paths[rng.integers(len(paths))], sr=16000)
        y = resample(trim_silence(y, top_db=20.0)[0], 16000, sr)  # tight: speech from the first sample
        out = np.concatenate([out, 0.3 * y / np.max(np.abs(y))])
    return out[: int(seconds * sr)]


def stereo_call(path, seconds=7.0, agent=AGENT, customer=CUSTOMER):
    y = np.zeros((int(seconds * SR), 2), np.float32)
    for ch, spans in enumerate((agent, customer)):
        for k, (s, e) in enumerate(spans):
            y[int(s * SR):int(e * SR), ch] = real_speech(e - s + 0.01, SR, seed=10 * ch + k)[: int(e * SR) - int(s * SR)]
    sf.write(path, y, SR)
    return path


@pytest.fixture(scope="module")
def calls_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calls")
    stereo_call(d / "call_a.wav")
    stereo_call(d / "call_b.flac", agent=[(1.0, 3.0)], customer=[(3.5, 6.0)])
    sf.write(d / "mono_c.wav", real_speech(2.0, 16000, seed=99), 16000)
    (d / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(d / "silent.wav", np.zeros((SR * 3, 2), np.float32), SR)
    sf.write(d / "empty.wav", np.zeros((0, 2), np.float32), SR)
    return d


def test_match_recordings(calls_dir):
    names = ("call_a.wav", "corrupt.wav", "empty.wav", "mono_c.wav", "silent.wav")
    paths = sc.match_inputs(str(calls_dir / "*.wav"))
    assert paths == [str(calls_dir / n) for n in names]
    refs = sc.assign_calls(paths, sc.input_root(str(calls_dir / "*.wav")), None)
    assert [r.call_id for r in refs] == [n[:-4] for n in names]
    with TestPipeline() as p:
        out = p | sc.MatchRecordings(refs) | beam.Map(lambda r: r.path)
        assert_that(out, equal_to(paths))


def test_segment_and_trim_finds_speech_roles_and_errors(calls_dir):
    fcfg = FeatureConfig()
    seg_cfg = SegmentConfig(max_segment_s=fcfg.window_s)
    paths = [str(calls_dir / n) for n in ("call_a.wav", "corrupt.wav", "silent.wav", "empty.wav")]

    def check_segments(items):
        keys = sorted((k for k, _ in items), key=lambda k: k.segment_index)
        spans = {"agent": [], "customer": []}
        for k in keys:
            spans[k.role].append((k.start_s, k.end_s))
            assert k.channel == {"agent": 0, "customer": 1}[k.role]
        for role, truth in (("agent", AGENT), ("customer", CUSTOMER)):
            got = sorted(spans[role])
            assert got[0][0] == pytest.approx(truth[0][0], abs=TOL)     # first speech onset
            assert got[-1][1] == pytest.approx(truth[-1][1], abs=TOL)   # last speech offset
            for s, e in got:  # every segment lies inside a true speech span
                assert any(ts - TOL <= s and e <= te + TOL for ts, te in truth)
            assert all(e - s <= fcfg.window_s + 1e-6 for s, e in got)
        assert [k.segment_index for k in keys] == list(range(len(keys)))
        assert all(w.ndim == 1 and w.dtype == np.float32 for _, w in items)

    with TestPipeline() as p:
        out = p | beam.Create(paths) | beam.ParDo(sc.SegmentAndTrimFn(seg_cfg, fcfg)).with_outputs(
            "calls", "errors", main="segments")
        assert_that(out.segments, check_segments, label="segments")
        assert_that(out.calls | beam.Map(lambda m: (m.call_id, m.info.channels, m.info.sample_rate)),
                    equal_to([("call_a", 2, SR)]), label="calls")
        assert_that(out.errors | beam.Map(lambda r: (r["path"].rsplit("/", 1)[1], r["stage"], r["error"])),
                    equal_to([("corrupt.wav", "decode", "unreadable"), ("silent.wav", "segment", "no_speech"),
                              ("empty.wav", "decode", "empty")]), label="errors")


def test_features_and_inference_give_schema_rows(calls_dir, bundle):
    inputs, model_id = sc.read_bundle_inputs(bundle)
    key = sc.SegmentKey("c", "/x/c.wav", 1, "customer", 0, 0.0, 1.0, -20.0)

    def check(rows):
        assert len(rows) == 3
        for r in rows:
            assert set(r) == set(SEGMENTS.names)
            assert sum(r[f"p_{e}"] for e in EMOTIONS) == pytest.approx(1.0, abs=1e-4)
            assert r["model_id"] == model_id and r["schema_version"] == SCHEMA_VERSION

    with TestPipeline() as p:
        rows = (p | beam.Create([(key, speechlike(1.0 + i / 2)) for i in range(3)])
                | sc.ExtractFeatures(inputs)
                | sc.RunInference(sc.KeyedModelHandler(sc.BundleModelHandler(bundle, 2)))
                | beam.MapTuple(sc.segment_row))
        assert_that(rows, check)


def read_table(out, table, date):
    return pd.read_parquet(out / table / f"date={date}")


def test_whole_job_end_to_end_and_rerun(calls_dir, bundle, tmp_path):
    out = tmp_path / "out"
    args = [f"--input={calls_dir}/*", f"--output={out}", f"--model={bundle}", "--date=2026-11-23"]
    counts = sc.run(args)
    assert counts["files_matched"] == 6 and counts["calls_written"] == 3 and counts["errors_written"] == 3
    calls = read_table(out, "calls", "2026-11-23")
    segments = read_table(out, "segments", "2026-11-23")
    errors = read_table(out, "errors", "2026-11-23")
    assert sorted(calls["call_id"]) == ["call_a", "call_b", "mono_c"]
    assert sorted(errors["error"]) == ["empty", "no_speech", "unreadable"]
    for table, schema in (("calls", CALLS), ("segments", SEGMENTS), ("errors", ERRORS)):
        files = list((out / table / "date=2026-11-23").glob("*.parquet"))
        assert files and all(pq.read_schema(f).remove_metadata().equals(schema.remove_metadata()) for f in files)
    a = calls.set_index("call_id").loc["call_a"]
    assert a["duration_s"] == pytest.approx(7.0) and a["channels"] == 2 and a["sample_rate"] == SR
    # the VAD pads each region by pad_s (0.06 s) on both sides: within 0.3 s of the truth
    assert a["agent_talk_s"] == pytest.approx(3.0, abs=3 * TOL) and a["customer_talk_s"] == pytest.approx(3.0, abs=3 * TOL)
    assert a["overlap_s"] == pytest.approx(0.5, abs=3 * TOL)
    pads = 4 * 2 * SegmentConfig().pad_s  # four speech spans, each padded on both sides
    assert 7.0 - 5.5 - pads - TOL <= a["silence_s"] <= 7.0 - 5.5 + TOL
    assert a["n_segments"] == (segments["call_id"] == "call_a").sum()
    assert 0 <= a["satisfaction_proxy"] <= 1
    mono = calls.set_index("call_id").loc["mono_c"]
    assert pd.isna(mono["customer_role"]) and set(segments[segments.call_id == "mono_c"]["role"]) == {"mixed"}
    # a re-run of the same date replaces the partition; another date is untouched
    sc.run(args[:-1] + ["--date=2026-11-24"])
    sc.run(args)
    assert len(read_table(out, "segments", "2026-11-23")) == len(segments)
    assert len(read_table(out, "calls", "2026-11-23")) == 3
    assert len(read_table(out, "calls", "2026-11-24")) == 3
    hive = pd.read_parquet(out / "calls")
    assert sorted(hive["date"].astype(str).unique()) == ["2026-11-23", "2026-11-24"] and len(hive) == 6
    duck = duckdb.sql(f"select date, count(*) n from read_parquet('{out}/segments/*/*.parquet', hive_partitioning=1) "
                      "group by date order by date").fetchall()
    assert [(str(d), n) for d, n in duck] == [("2026-11-23", len(segments)), ("2026-11-24", len(segments))]
    assert not (out / "_staging").exists() or not any((out / "_staging").iterdir())
    png = tmp_path / "call_a.png"
    assert main(["report", "--output", str(out), "--call", "call_a", "--date", "2026-11-23", "--out", str(png)]) == 0
    assert png.stat().st_size > 5000


def test_empty_match_fails_and_touches_nothing(bundle, tmp_path):
    args = [f"--input={tmp_path}/nothing/*.wav", f"--output={tmp_path}/out", f"--model={bundle}", "--date=2026-01-01"]
    with pytest.raises(sc.NothingMatched):
        sc.run(args)
    assert sc.main(args) == 3 and not (tmp_path / "out").exists()


def test_the_command_with_two_worker_processes(calls_dir, bundle, tmp_path):
    """`python -m pipelines.score_calls` in the DirectRunner's multi_processing mode: the job's
    types pickle under their importable module name (a worker cannot import __main__'s, nor
    could Dataflow's), and each worker loads the model itself."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "pipelines.score_calls", f"--input={calls_dir}/call_*", f"--output={out}",
                           f"--model={bundle}", "--date=2026-11-23", "--direct_running_mode=multi_processing",
                           "--direct_num_workers=2"], cwd=Path(sc.__file__).parents[1], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "files matched 2, calls written 2, errors written 0" in done.stdout
    assert sorted(read_table(out, "calls", "2026-11-23")["call_id"]) == ["call_a", "call_b"]


def test_numeric_threads_must_be_positive(tmp_path):
    with pytest.raises(SystemExit) as exc:
        sc.parse_options([f"--input={tmp_path}/*.wav", f"--output={tmp_path}/out", "--numeric_threads=0"])
    assert exc.value.code == 2


def test_summarize_calls_joins_by_file_and_drops_orphan_segments():
    def seg(path, i):
        return {"call_id": path[1:-4], "path": path, "channel": 0, "role": "mixed", "segment_index": i,
                "start_s": float(i), "end_s": i + 1.0, "valence": 0.0, **{f"p_{e}": 0.125 for e in EMOTIONS}}

    meta = sc.CallMeta("ok", "/ok.wav", sc.CallInfo(3.0, 8000, 1), {0: np.array([[0.0, 2.0]])})
    with TestPipeline() as p:
        metas = p | "Metas" >> beam.Create([meta])
        segments = p | "Segments" >> beam.Create([seg("/ok.wav", 0), seg("/ok.wav", 1), seg("/failed.wav", 0)])
        out = (metas, segments) | sc.SummarizeCalls(("agent", "customer"), "m1")
        assert_that(out.calls | beam.Map(lambda r: (r["call_id"], r["n_segments"], r["model_id"])),
                    equal_to([("ok", 2, "m1")]), label="calls")
        assert_that(out.segments | beam.Map(lambda r: (r["path"], r["segment_index"])),
                    equal_to([("/ok.wav", 0), ("/ok.wav", 1)]), label="segments")


def test_direct_runner_runs_in_process_other_runners_pass_through():
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    assert isinstance(sc.local_runner(PipelineOptions([])), FnApiRunner)
    assert isinstance(sc.local_runner(PipelineOptions(["--runner=DirectRunner"])), FnApiRunner)
    assert sc.local_runner(PipelineOptions(["--runner=DataflowRunner"])) is None
