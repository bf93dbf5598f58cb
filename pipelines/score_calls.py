"""Nightly job: call recordings in, per-segment emotion timelines and per-call summaries out.

    python -m pipelines.score_calls --input 'calls/*.wav' --output out/ [--model default]
        [--date YYYY-MM-DD] [--runner DirectRunner|DataflowRunner ...]

Writes Hive-style partitions OUTPUT/{segments,calls,errors}/date=YYYY-MM-DD/*.parquet.
Tables are written to a staging folder first and swapped in when the job succeeds, so a
re-run replaces that date's partition and leaves other dates alone. Every matched file
ends as exactly one `calls` row or one `errors` row.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from schemas import CALLS, ERRORS, SCHEMA_VERSION, SEGMENTS
from ser_core.audio import AudioError, preprocess, rms_dbfs
from ser_core.bundle import META_FILE, MODEL_FILE, WIDEBAND_DIR, Bundle, BundleInputs, Routed, load_bundle, read_bundle_inputs
from ser_core.calls import CallInfo, open_audio, read_segment, segment_call, summarize_call
from ser_core.config import FeatureConfig, SegmentConfig
from ser_core.features import INPUT_TIME_AXIS, standardize_bands
from ser_core.labels import EMOTIONS, valence_arousal

NAMESPACE = "score_calls"
LOG = logging.getLogger(NAMESPACE)


class ScoreCallsOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", help="glob of recordings (local, gs://, ...); required")
        parser.add_argument("--output", help="output folder for the Parquet tables; required")
        parser.add_argument("--model", default="default", help="model bundle folder, or 'default'")
        parser.add_argument("--date", default=dt.date.today().isoformat(), help="partition date YYYY-MM-DD")
        parser.add_argument("--roles", default="agent,customer", help="role of each channel, in order")
        parser.add_argument("--vad_threshold", type=float, default=0.2, help="speech probability that starts a region")
        parser.add_argument("--vad_backend", default="silero", choices=("silero", "webrtc"), help="voice-activity detector")
        parser.add_argument("--pad_s", type=float, default=0.06, help="speech regions widened by this much each side")
        parser.add_argument("--min_speech_s", type=float, default=0.3)
        parser.add_argument("--min_silence_s", type=float, default=0.3)
        parser.add_argument("--max_segment_s", type=float, default=None, help="default: the model's input length")
        parser.add_argument("--overlap_s", type=float, default=0.5)
        parser.add_argument("--inference_batch_size", type=int, default=64)


class SegmentKey(NamedTuple):
    call_id: str
    path: str
    channel: int
    role: str
    segment_index: int
    start_s: float
    end_s: float
    loudness_dbfs: float


class CallMeta(NamedTuple):
    call_id: str
    path: str
    info: CallInfo
    regions_s: dict[int, np.ndarray]


def call_id_for(path: str) -> str:
    """The recording's file name without extension."""
    return PurePosixPath(path).stem


def error_row(path: str, stage: str, error: str, message: str) -> dict[str, Any]:
    return {"path": path, "stage": stage, "error": error, "message": message[:2000], "schema_version": SCHEMA_VERSION}


class SegmentAndTrimFn(beam.DoFn):
    """path -> (SegmentKey, trimmed 16 kHz waveform) per speech segment of every channel;
    CallMeta to the `calls` output, or one row to the `errors` output."""

    CALLS, ERRORS = "calls", "errors"

    def __init__(self, seg_cfg: SegmentConfig, feature_cfg: FeatureConfig):
        self.seg_cfg, self.feature_cfg = seg_cfg, feature_cfg
        self.segments = Metrics.counter(NAMESPACE, "segments")
        self.dropped = Metrics.counter(NAMESPACE, "segments_too_short_after_trim")

    def process(self, path: str) -> Iterator[Any]:
        """Segments are emitted as they are read (memory: one segment). A file that fails
        part-way still ends as one error row; SummarizeCalls drops its segments."""
        fc, sc = self.feature_cfg, self.seg_cfg
        stage, emitted = "decode", 0
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw, open_audio(raw) as f:
                info = CallInfo(f.frames / f.samplerate, f.samplerate, f.channels)
                stage = "segment"
                segs, regions = segment_call(f, sc, fc.hop_length / fc.sample_rate, sc.max_segment_s or fc.window_s)
                for seg in segs:
                    y = read_segment(f, seg, fc.sample_rate)
                    try:
                        wave = preprocess(y, fc.sample_rate, fc)
                    except AudioError:
                        self.dropped.inc()
                        continue
                    emitted += 1
                    yield SegmentKey(call_id_for(path), path, seg.channel, seg.role, seg.index,
                                     seg.start / f.samplerate, seg.end / f.samplerate, rms_dbfs(y)), wave
        except AudioError as exc:
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(path, stage, exc.code, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 — one bad file must not fail the job
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(path, stage, "internal", f"{type(exc).__name__}: {exc}"))
            return
        if not emitted:
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(
                path, "segment", "no_speech", f"no speech found (VAD threshold {sc.vad_threshold:g}) on any channel"))
            return
        self.segments.inc(emitted)
        yield beam.pvalue.TaggedOutput(self.CALLS, CallMeta(call_id_for(path), path, info, regions))


def localize_bundle(spec: str) -> str:
    """A bundle on any Beam filesystem (gs://, s3://, ...) copied to a local temporary
    folder, with its wideband companion; local paths and `default` are returned unchanged."""
    if spec == "default" or FileSystems.get_scheme(spec) in (None, "file"):
        return spec
    local = tempfile.mkdtemp(prefix="ser-bundle-")

    def copy(folder: str) -> dict[str, Any]:
        os.makedirs(os.path.join(local, folder), exist_ok=True)
        for name in (MODEL_FILE, META_FILE):
            with FileSystems.open(FileSystems.join(spec, folder, name) if folder else FileSystems.join(spec, name),
                                  compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                    open(os.path.join(local, folder, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
        with open(os.path.join(local, folder, META_FILE)) as f:
            return json.load(f)

    if WIDEBAND_DIR in copy(""):
        copy(WIDEBAND_DIR)
    return local


class BundleModelHandler(ModelHandler[Routed, PredictionResult, Bundle]):
    """Loads the bundle once per worker (hash-checked, Keras safe mode) and scores batches
    of routed inputs (`ser_core.bundle.BundleInputs`)."""

    def __init__(self, model: str, batch_size: int = 64):
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.model_spec = model

    def load_model(self) -> Bundle:
        return load_bundle(localize_bundle(self.model_spec))

    def run_inference(self, batch: Sequence[Routed], model: Bundle, inference_args=None) -> Iterable[PredictionResult]:
        emo, inten = model.predict_routed(batch)
        return [PredictionResult(x, (e, i), model.model_id) for x, e, i in zip(batch, emo, inten)]


class MatchRecordings(beam.PTransform):
    """Glob -> file paths (an empty match is allowed: a quiet night is not an error)."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin):
        counter = Metrics.counter(NAMESPACE, "files_matched")

        def count(path: str) -> str:
            counter.inc()
            return path

        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | "Path" >> beam.Map(lambda m: m.path)
            | "Count" >> beam.Map(count)
            | "Spread" >> beam.Reshuffle()
        )


class ExtractFeatures(beam.PTransform):
    """(key, waveform) -> (key, routed model inputs: one per network of the bundle that
    takes part, by the bundle's own feature configs)."""

    def __init__(self, inputs: BundleInputs):
        super().__init__()
        self.inputs = inputs

    def expand(self, pcoll):
        inputs = self.inputs
        return pcoll | beam.MapTuple(lambda key, wave: (key, inputs.segment(wave)))


class BandStats(beam.CombineFn):
    """Model inputs -> (mean, sd) of every band over all inputs and frames: the statistics
    `ser_core.features.speaker_standardize` computes for one speaker."""

    def __init__(self, time_axis: int):
        self.time_axis = time_axis

    def create_accumulator(self):
        return 0, 0.0, 0.0

    def add_input(self, acc, x: np.ndarray):
        n, total, squares = acc
        x = x.astype(np.float64)
        return (n + x.shape[self.time_axis], total + x.sum(axis=self.time_axis, keepdims=True),
                squares + (x**2).sum(axis=self.time_axis, keepdims=True))

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), sum(a[1] for a in accs), sum(a[2] for a in accs)

    def extract_output(self, acc):
        n, total, squares = acc
        mean = total / n
        return mean.astype(np.float32), np.sqrt(np.maximum(squares / n - mean**2, 0.0)).astype(np.float32)


class NormalizePerSpeaker(beam.PTransform):
    """(key, (input,)) -> (key, (input standardised per band by the statistics of all inputs
    of its call side,)): one speaker per channel, as the bundle was trained (`speaker_norm`;
    such a bundle has one network)."""

    def __init__(self, time_axis: int):
        super().__init__()
        self.time_axis = time_axis

    def expand(self, pcoll):
        def side(key: SegmentKey) -> tuple[str, int]:
            return key.path, key.channel

        def standardize(item: tuple[SegmentKey, Routed], stats: dict) -> tuple[SegmentKey, Routed]:
            key, (x,) = item
            return key, (standardize_bands(x, *stats[side(key)]),)

        stats = (pcoll
                 | "KeyBySide" >> beam.MapTuple(lambda key, x: (side(key), x[0]))
                 | "BandStats" >> beam.CombinePerKey(BandStats(self.time_axis)))
        return pcoll | "Standardize" >> beam.Map(standardize, stats=beam.pvalue.AsDict(stats))


def segment_row(key: SegmentKey, result: PredictionResult) -> dict[str, Any]:
    emo, inten = result.inference
    top = int(np.argmax(emo))
    valence, arousal = valence_arousal(emo)
    return {
        **{k: getattr(key, k) for k in ("call_id", "path", "channel", "role", "segment_index", "start_s", "end_s")},
        **{f"p_{e}": float(emo[j]) for j, e in enumerate(EMOTIONS)},
        "emotion": EMOTIONS[top], "confidence": float(emo[top]),
        "intensity": "strong" if inten[1] >= 0.5 else "normal", "p_strong": float(inten[1]),
        "valence": float(valence), "arousal": float(arousal), "loudness_dbfs": key.loudness_dbfs,
        "wideband": any(x is not None for x in result.example[1:]),
        "model_id": result.model_id, "schema_version": SCHEMA_VERSION,
    }


class SummarizeFn(beam.DoFn):
    """(path, {meta, segments}) -> one `calls` row, and the call's segment rows to the
    `segments` output. Segments of a file without CallMeta (it failed) are dropped."""

    SEGMENTS = "segments"

    def __init__(self, roles: Sequence[str], model_id: str):
        self.roles, self.model_id = tuple(roles), model_id

    def process(self, item) -> Iterator[Any]:
        _, grouped = item
        metas, rows = list(grouped["meta"]), list(grouped["segments"])
        if not metas:
            return
        (meta,) = metas
        yield summarize_call(meta.call_id, meta.path, meta.info, rows, meta.regions_s, self.roles,
                             self.model_id, SCHEMA_VERSION)
        for row in rows:
            yield beam.pvalue.TaggedOutput(self.SEGMENTS, row)


class SummarizeCalls(beam.PTransform):
    """CallMeta + segment rows, joined by file -> `calls` rows (main) and `segments` rows."""

    def __init__(self, roles: Sequence[str], model_id: str):
        super().__init__()
        self.roles, self.model_id = tuple(roles), model_id

    def expand(self, inputs):
        metas, segments = inputs
        return (
            {"meta": metas | "KeyMeta" >> beam.Map(lambda m: (m.path, m)),
             "segments": segments | "KeySegments" >> beam.Map(lambda r: (r["path"], r))}
            | "JoinByFile" >> beam.CoGroupByKey()
            | "Summarize" >> beam.ParDo(SummarizeFn(self.roles, self.model_id)).with_outputs(
                SummarizeFn.SEGMENTS, main="calls")
        )


class WriteTable(beam.PTransform):
    """Rows -> `folder/table/date=D/part-*.parquet`, counting rows as `<table>_written`."""

    def __init__(self, folder: str, table: str, schema, date: str):
        super().__init__()
        self.folder, self.table, self.schema, self.date = folder, table, schema, date

    def expand(self, rows):
        counter = Metrics.counter(NAMESPACE, f"{self.table}_written")

        def count(row):
            counter.inc()
            return row

        prefix = FileSystems.join(self.folder, self.table, f"date={self.date}", "part")
        return rows | "Count" >> beam.Map(count) | "Parquet" >> beam.io.WriteToParquet(
            prefix, self.schema, file_name_suffix=".parquet", codec="snappy")


def build(p: beam.Pipeline, opts: ScoreCallsOptions, staging: str) -> None:
    """The job's graph: match -> segment + trim -> features [-> per-speaker standardisation]
    -> RunInference -> rows -> Parquet."""
    inputs, model_id = read_bundle_inputs(localize_bundle(opts.model))
    feature_cfg = inputs.feature_config
    roles = tuple(r.strip() for r in opts.roles.split(","))
    seg_cfg = SegmentConfig(vad_threshold=opts.vad_threshold, vad_backend=opts.vad_backend, pad_s=opts.pad_s,
                            min_speech_s=opts.min_speech_s, min_silence_s=opts.min_silence_s,
                            max_segment_s=opts.max_segment_s, overlap_s=opts.overlap_s, roles=roles)
    split = (
        p
        | "MatchRecordings" >> MatchRecordings(opts.input)
        | "SegmentAndTrim" >> beam.ParDo(SegmentAndTrimFn(seg_cfg, feature_cfg)).with_outputs(
            SegmentAndTrimFn.CALLS, SegmentAndTrimFn.ERRORS, main="segments")
    )
    routed = split.segments | "ExtractFeatures" >> ExtractFeatures(inputs)
    if feature_cfg.speaker_norm:
        routed = routed | "NormalizePerSpeaker" >> NormalizePerSpeaker(INPUT_TIME_AXIS[inputs.networks[0][1]])
    segments = (
        routed
        | "RunInference" >> RunInference(KeyedModelHandler(BundleModelHandler(opts.model, opts.inference_batch_size)))
        | "ToSegmentRows" >> beam.MapTuple(segment_row)
    )
    summary = (split.calls, segments) | "SummarizeCalls" >> SummarizeCalls(roles, model_id)
    summary.segments | "WriteSegments" >> WriteTable(staging, "segments", SEGMENTS, opts.date)
    summary.calls | "WriteCalls" >> WriteTable(staging, "calls", CALLS, opts.date)
    split.errors | "WriteErrors" >> WriteTable(staging, "errors", ERRORS, opts.date)


def publish(staging: str, output: str, date: str) -> None:
    """Replace each table's `date=` partition in `output` with the staged one."""
    for table in ("segments", "calls", "errors"):
        src_dir = FileSystems.join(staging, table, f"date={date}")
        dst_dir = FileSystems.join(output, table, f"date={date}")
        if FileSystems.exists(dst_dir):
            FileSystems.delete([dst_dir])
        FileSystems.mkdirs(dst_dir)
        files = [m.path for r in FileSystems.match([FileSystems.join(src_dir, "*.parquet")]) for m in r.metadata_list]
        if files:
            FileSystems.rename(files, [FileSystems.join(dst_dir, PurePosixPath(f).name) for f in files])
    FileSystems.delete([staging])


def counters(result) -> dict[str, int]:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    return {c.key.metric.name: int(c.committed if c.committed is not None else c.attempted) for c in query["counters"]}


def local_runner(opts: PipelineOptions):
    """Beam's in-process runner when none or `DirectRunner` is asked for; otherwise None
    (Beam resolves `--runner`). Beam's DirectRunner first tries to download and start
    the Prism runner binary, which a nightly job should neither need nor depend on."""
    if opts.view_as(StandardOptions).runner in (None, "DirectRunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return None


def run(argv: Sequence[str] | None = None) -> dict[str, int]:
    """Run the job; returns its counters (files_matched, calls_written, errors_written, ...)."""
    opts = PipelineOptions(argv)
    opts.view_as(SetupOptions).save_main_session = False
    job = opts.view_as(ScoreCallsOptions)
    if not job.input or not job.output:
        raise SystemExit("score_calls: --input and --output are required")
    staging = FileSystems.join(job.output, "_staging", f"{job.date}-{uuid.uuid4().hex[:8]}")
    with beam.Pipeline(runner=local_runner(opts), options=opts) as p:
        build(p, job, staging)
    result = p.result
    publish(staging, job.output, job.date)
    c = counters(result)
    matched, calls, errors = c.get("files_matched", 0), c.get("calls_written", 0), c.get("errors_written", 0)
    LOG.info("reconciliation: files matched %d, calls written %d, errors written %d%s", matched, calls, errors,
             "" if matched == calls + errors else "  MISMATCH")
    print(f"reconciliation: files matched {matched}, calls written {calls}, errors written {errors}; "
          f"tables in {job.output.rstrip('/')}/{{segments,calls,errors}}/date={job.date}/")
    return c


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    run()
