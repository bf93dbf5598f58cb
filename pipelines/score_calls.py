"""Nightly job: call recordings in, per-segment emotion timelines and per-call summaries out.

    python -m pipelines.score_calls --input 'calls/*.wav' --output out/ [--model default]
        [--date YYYY-MM-DD] [--manifest calls.csv] [--replace_partition] [--log_level INFO]
        [--runner DirectRunner|DataflowRunner ...]

Writes Hive-style partitions OUTPUT/{segments,calls,errors}/date=YYYY-MM-DD/part-0.parquet.
Every matched file ends as exactly one `calls` row or one `errors` row (an errors row is an
outcome, not a failure of the run).

Re-runs: by default a run merges into its date by call: the calls it scored (in `calls` or
`errors`) replace their own earlier rows in all three tables, matched by call_id or path;
other calls of the date stay. `--replace_partition` replaces the whole date instead. A run
whose --input matches nothing exits 3 and touches nothing.

Atomicity: the job writes to OUTPUT/_staging/<run>/, the launcher merges each table into
one staged file and then swaps it in as that partition's single `part-0.parquet`. On local
disk that is an `os.replace` (atomic on POSIX: a reader sees the old or the new table,
never a half-written one; a failed or killed run leaves the previous tables as they were,
plus a stale `_staging/<run>` folder that may be deleted). On object stores (gs://, s3://)
the swap is Beam's rename, a copy over the one object: as atomic as the store's object
overwrite (GCS and S3 replace an object atomically), but not across the three tables, which
are swapped one after another on every filesystem.

Exit codes of `python -m pipelines.score_calls`: 0 every matched file accounted for;
2 bad options or manifest (nothing run); 3 the input matched no file (nothing touched);
4 reconciliation failed (files matched != calls written + errors written; the tables hold
what was scored, the unaccounted files keep their earlier rows).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported (ser_core.bundle)

if __name__ == "__main__":
    # `python -m pipelines.score_calls`: run the module under its importable name instead, so the
    # job's types pickle as pipelines.score_calls.X, which a worker process (Dataflow's, or the
    # DirectRunner's multi_processing mode) can import; __main__.X it cannot
    from pipelines.score_calls import main as _main

    sys.exit(_main())

_COMMAND = getattr(sys.modules["__main__"].__spec__, "name", None) == __name__  # launched by the line above


import argparse  # noqa: E402
import csv  # noqa: E402
import datetime as dt  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterable, Iterator, Sequence  # noqa: E402
from pathlib import PurePosixPath  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

NOISE = ("apitools not found", "Resource module is not available")  # Beam warnings that mean nothing here
THIRD_PARTY = ("apache_beam", "tensorflow", "keras", "absl", "h5py", "urllib3", "google")


class _QuietThirdParty(logging.Filter):
    """Records of Beam, TensorFlow & co. below `level`, and Beam's known-noise warnings at the
    default level, are dropped; the job's own records always pass."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        if not any(f"/{pkg}/" in path for pkg in THIRD_PARTY):
            return True
        if self.level >= logging.WARNING and record.levelno < logging.ERROR and any(n in record.getMessage() for n in NOISE):
            return False
        return record.levelno >= self.level


def setup_logging(level_name: str = "WARNING") -> None:
    """The job's own log at INFO; Beam's and TensorFlow's at `level_name` (default WARNING)."""
    level = getattr(logging, level_name.upper())
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_score_calls", False)]:
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._score_calls = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    handler.addFilter(_QuietThirdParty(level))
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))
    if level < logging.WARNING:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def _early_log_level(argv: Sequence[str]) -> str:
    for i, a in enumerate(argv):
        if a.startswith("--log_level="):
            return a.split("=", 1)[1]
        if a == "--log_level" and i + 1 < len(argv):
            return argv[i + 1]
    return "WARNING"


if _COMMAND:  # quiet before Beam's imports log their first warnings
    try:
        setup_logging(_early_log_level(sys.argv[1:]))
    except AttributeError:
        setup_logging()

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from apache_beam.io.filesystem import CompressionTypes  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions  # noqa: E402
from apache_beam.options.pipeline_options import _BeamArgumentParser  # noqa: E402

from schemas import CALLS, ERRORS, SCHEMA_VERSION, SEGMENTS, calls_schema  # noqa: E402
from ser_core.audio import AudioError, preprocess, rms_dbfs  # noqa: E402
from ser_core.encoder_bundle import HEAD_FILE, KIND as ENCODER_KIND  # noqa: E402
from ser_core.bundle import META_FILE, MODEL_FILE, WIDEBAND_DIR, Bundle, BundleInputs, Routed, load_bundle, read_bundle_inputs  # noqa: E402,E501
from ser_core.calls import CallInfo, channels_ignored, is_silent, open_audio, read_segment, segment_call, summarize_call  # noqa: E402,E501
from ser_core.config import FeatureConfig, SegmentConfig  # noqa: E402
from ser_core.labels import EMOTIONS, valence_arousal  # noqa: E402
from ser_core.threads import limit_threads  # noqa: E402

NAMESPACE = "score_calls"
LOG = logging.getLogger(NAMESPACE)
EXIT_OK, EXIT_USAGE, EXIT_NO_INPUT, EXIT_UNRECONCILED = 0, 2, 3, 4
TABLE_NAMES = ("segments", "calls", "errors")
PART = "part-0.parquet"


class UsageError(ValueError):
    """Bad options or manifest: nothing is run (exit 2)."""

    exit_code = EXIT_USAGE


class NothingMatched(RuntimeError):
    """The input matched no file: nothing is touched (exit 3)."""

    exit_code = EXIT_NO_INPUT


def _iso_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


class ScoreCallsOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", help="glob of recordings (local, gs://, ...); required")
        parser.add_argument("--output", help="output folder for the Parquet tables; required")
        parser.add_argument("--model", default="default", help="model bundle folder, or 'default'")
        parser.add_argument("--date", type=_iso_date, default=dt.date.today().isoformat(), help="partition date YYYY-MM-DD")
        parser.add_argument("--manifest", default=None,
                            help="CSV with path, call_id and metadata columns carried into the calls table")
        parser.add_argument("--replace_partition", action="store_true",
                            help="replace the whole date instead of merging this run's calls into it")
        parser.add_argument("--log_level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                            help="level of Beam's and TensorFlow's log records (the job's own are always shown)")
        parser.add_argument("--roles", default="agent,customer", help="role of each channel, in order")
        parser.add_argument("--vad_threshold", type=float, default=0.2, help="speech probability that starts a region")
        parser.add_argument("--vad_backend", default="silero", choices=("silero", "webrtc"), help="voice-activity detector")
        parser.add_argument("--pad_s", type=float, default=0.06, help="speech regions widened by this much each side")
        parser.add_argument("--min_speech_s", type=float, default=0.3)
        parser.add_argument("--min_silence_s", type=float, default=0.3)
        parser.add_argument("--max_segment_s", type=float, default=None, help="default: the model's input length")
        parser.add_argument("--inference_batch_size", type=int, default=64)
        parser.add_argument("--numeric_threads", type=int, default=1,
                            help="threads per worker for BLAS, OpenMP, TensorFlow and the encoder (1: the most work "
                                 "per core; run more workers to use more cores, e.g. --direct_num_workers=N "
                                 "--direct_running_mode=multi_processing)")


class CallRef(NamedTuple):
    """One matched file and who it is: `call_id` (unique in the run), `call_name` (the file's
    stem, for people), manifest `metadata` as (column, value) pairs, and `conflict`: why it
    cannot be scored under its id (another file of the run has the same one), or None."""

    path: str
    call_id: str
    call_name: str
    metadata: tuple[tuple[str, str | None], ...] = ()
    conflict: str | None = None


class SegmentKey(NamedTuple):
    call_id: str
    path: str
    channel: int
    role: str
    segment_index: int
    start_s: float
    end_s: float
    loudness_dbfs: float
    call_name: str = ""


class CallMeta(NamedTuple):
    call_id: str
    path: str
    info: CallInfo
    regions_s: dict[int, np.ndarray]
    ref: CallRef | None = None


GLOB_CHARS = "*?[{"


def input_root(pattern: str) -> str:
    """The glob's fixed prefix, up to its last '/' before the first wildcard ('/d/calls/' for
    '/d/calls/*/*.wav'; a path without wildcards: its folder)."""
    cut = min([pattern.find(c) for c in GLOB_CHARS if c in pattern] or [len(pattern)])
    return pattern[: pattern[:cut].rfind("/") + 1]


def derived_call_id(path: str, root: str) -> str:
    """A recording's call_id: its path below the input glob's fixed prefix, without the
    extension ('site1/call_001' for '/d/calls/site1/call_001.wav' under '/d/calls/*/*.wav').

    Why this and not the stem or a hash: it is unique wherever the paths are (two
    'call_001.wav' in different folders get different ids; the stem alone merged them
    into one garbled call), readable, and for a flat folder it equals the stem, so ids of
    earlier runs, `ser report --call call_001` and joins on call_id keep working. It is
    stable as long as re-runs use a glob with the same fixed prefix (re-run one late file
    of 'calls/2026-11-24/*.wav' as 'calls/2026-11-24/late.wav'); a re-run also replaces
    earlier rows of the same path, so a recording is never counted twice. Two files that
    differ only in extension share an id: both go to `errors` (duplicate_call_id), and a
    --manifest gives them ids."""
    rel = path[len(root):] if root and path.startswith(root) else PurePosixPath(path).name
    p = PurePosixPath(rel)
    return str(p.with_suffix("")) if p.suffix else str(p)


def read_manifest(spec: str) -> dict[str, dict[str, str | None]]:
    """`--manifest`: a CSV with a `path` column (as matched, or relative to the glob's fixed
    prefix), an optional `call_id` (empty: derived) and any metadata columns, carried into
    the calls table as nullable strings (an empty cell is null; cast them in the query,
    e.g. `cast(started_at as timestamp)`). Duplicate paths or call_ids, or a metadata column
    named like a calls column, are a `UsageError` before the job starts."""
    try:
        with FileSystems.open(spec, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")))
            columns = list(rows[0].keys()) if rows else []
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --manifest {spec}: {exc}") from exc
    if rows and "path" not in columns:
        raise UsageError(f"--manifest {spec} has no 'path' column (columns: {', '.join(columns)})")
    clash = [c for c in columns if c not in ("path", "call_id") and c in CALLS.names]
    if clash:
        raise UsageError(f"--manifest columns clash with calls columns: {', '.join(clash)}")
    for key in ("path", "call_id"):
        counts = Counter((r.get(key) or "").strip() for r in rows)
        dup = sorted(v for v, n in counts.items() if v and n > 1)
        if dup:
            raise UsageError(f"--manifest {spec}: duplicate {key}s: {', '.join(dup[:10])}")
    return {r["path"].strip(): {k: (v.strip() if isinstance(v, str) and v.strip() else None) for k, v in r.items()
                                if k != "path"} for r in rows}


def assign_calls(paths: Sequence[str], root: str, manifest: dict[str, dict[str, str | None]] | None) -> list[CallRef]:
    """Each matched path's CallRef: the manifest's call_id where it has one, else the derived
    one; files that end up sharing an id get a `conflict` and become errors rows."""
    manifest = manifest or {}
    meta_cols = sorted({k for row in manifest.values() for k in row if k != "call_id"})
    refs = []
    for path in paths:
        rel = path[len(root):] if path.startswith(root) else path
        row = manifest.get(path) or manifest.get(rel) or {}
        call_id = row.get("call_id") or derived_call_id(path, root)
        refs.append(CallRef(path, call_id, PurePosixPath(path).stem, tuple((c, row.get(c)) for c in meta_cols)))
    shared = Counter(r.call_id for r in refs)
    return [r if shared[r.call_id] == 1 else r._replace(
        conflict=f"call_id {r.call_id!r} is shared by {shared[r.call_id]} files of this run; give them ids in a --manifest")
        for r in refs]


def error_row(ref: CallRef, stage: str, error: str, message: str) -> dict[str, Any]:
    return {"call_id": ref.call_id, "call_name": ref.call_name, "path": ref.path, "stage": stage, "error": error,
            "message": message[:2000], "schema_version": SCHEMA_VERSION}


def as_ref(item: CallRef | str) -> CallRef:
    if isinstance(item, CallRef):
        return item
    return CallRef(item, derived_call_id(item, input_root(item)), PurePosixPath(item).stem)


class SegmentAndTrimFn(beam.DoFn):
    """CallRef (or path) -> (SegmentKey, trimmed 16 kHz waveform) per speech segment of every
    scored channel; CallMeta to the `calls` output, or one row to the `errors` output."""

    CALLS, ERRORS = "calls", "errors"

    def __init__(self, seg_cfg: SegmentConfig, feature_cfg: FeatureConfig, threads: int = 1):
        self.seg_cfg, self.feature_cfg, self.threads = seg_cfg, feature_cfg, threads
        self.segments = Metrics.counter(NAMESPACE, "segments")
        self.dropped = Metrics.counter(NAMESPACE, "segments_too_short_after_trim")

    def setup(self) -> None:
        limit_threads(self.threads)

    def process(self, item: CallRef | str) -> Iterator[Any]:
        """Segments are emitted as they are read (memory: one segment). A file that fails
        part-way still ends as one error row; SummarizeCalls drops its segments."""
        ref = as_ref(item)
        path = ref.path
        if ref.conflict:
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(ref, "identify", "duplicate_call_id", ref.conflict))
            return
        fc, sc = self.feature_cfg, self.seg_cfg
        stage, emitted, silent = "decode", 0, False
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw, open_audio(raw) as f:
                info = CallInfo(f.frames / f.samplerate, f.samplerate, f.channels, f.samples_repaired, f.truncated,
                                channels_ignored(f.channels, sc.roles))
                silent = is_silent(f)
                stage = "segment"
                segs, regions = segment_call(f, sc, max_segment_s=sc.max_segment_s or fc.window_s)
                for seg in segs:
                    y = read_segment(f, seg, fc.sample_rate)
                    try:
                        wave = preprocess(y, fc.sample_rate, fc)
                    except AudioError:
                        self.dropped.inc()
                        continue
                    emitted += 1
                    yield SegmentKey(ref.call_id, path, seg.channel, seg.role, seg.index, seg.start / f.samplerate,
                                     seg.end / f.samplerate, rms_dbfs(y), ref.call_name), wave
        except AudioError as exc:
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(ref, stage, exc.code, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 — one bad file must not fail the job
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(
                ref, stage, "internal", f"internal error while reading the file ({type(exc).__name__}: {exc})"))
            return
        if not emitted:
            yield beam.pvalue.TaggedOutput(self.ERRORS, error_row(
                ref, "segment", "no_speech", "no speech (silent recording)" if silent
                else "no speech (sound, but no speech the detector could score on any channel)"))
            return
        self.segments.inc(emitted)
        yield beam.pvalue.TaggedOutput(self.CALLS, CallMeta(ref.call_id, path, info, regions, ref))


def localize_bundle(spec: str) -> str:
    """A bundle on any Beam filesystem (gs://, s3://, ...) copied to a local temporary
    folder, with its wideband companion; local paths and `default` are returned unchanged."""
    if spec == "default" or FileSystems.get_scheme(spec) in (None, "file"):
        return spec
    local = tempfile.mkdtemp(prefix="ser-bundle-")

    def copy(folder: str) -> dict[str, Any]:
        os.makedirs(os.path.join(local, folder), exist_ok=True)

        def fetch(name: str) -> None:
            with FileSystems.open(FileSystems.join(spec, folder, name) if folder else FileSystems.join(spec, name),
                                  compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                    open(os.path.join(local, folder, name), "wb") as dst:
                shutil.copyfileobj(src, dst)

        fetch(META_FILE)
        with open(os.path.join(local, folder, META_FILE)) as f:
            meta = json.load(f)
        fetch(HEAD_FILE if meta.get("kind") == ENCODER_KIND else MODEL_FILE)
        return meta

    if WIDEBAND_DIR in copy(""):
        copy(WIDEBAND_DIR)
    return local


class BundleModelHandler(ModelHandler[Routed, PredictionResult, Bundle]):
    """Loads the bundle once per worker (hash-checked, Keras safe mode) and scores batches
    of routed inputs (`ser_core.bundle.BundleInputs`)."""

    def __init__(self, model: str, batch_size: int = 64, threads: int = 1):
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self.model_spec, self.threads = model, threads

    def load_model(self) -> Bundle:
        limit_threads(self.threads)
        return load_bundle(localize_bundle(self.model_spec), threads=self.threads)

    def run_inference(self, batch: Sequence[Routed], model: Bundle, inference_args=None) -> Iterable[PredictionResult]:
        emo, inten = model.predict_routed(batch)
        return [PredictionResult(x, (e, i), model.model_id) for x, e, i in zip(batch, emo, inten)]

    def get_num_bytes(self, batch: Sequence[Routed]) -> int:
        """Bytes of the batch's arrays (Beam's default pickles every batch to count them)."""
        return sum(x.nbytes for item in batch for x in item if x is not None)


class MatchRecordings(beam.PTransform):
    """The run's CallRefs (matched and identified by the launcher: `match_inputs`,
    `assign_calls`) -> CallRefs spread over workers, counted as `files_matched`."""

    def __init__(self, refs: Sequence[CallRef]):
        super().__init__()
        self.refs = list(refs)

    def expand(self, pbegin):
        counter = Metrics.counter(NAMESPACE, "files_matched")

        def count(ref: CallRef) -> CallRef:
            counter.inc()
            return ref

        return (
            pbegin
            | "Refs" >> beam.Create(self.refs, reshuffle=False)
            | "Count" >> beam.Map(count)
            | "Spread" >> beam.Reshuffle()
        )


def match_inputs(pattern: str) -> list[str]:
    """Every file the glob matches, sorted (local patterns made absolute)."""
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


class ExtractFeatures(beam.PTransform):
    """(key, waveform) -> (key, routed model inputs: one per network of the bundle that
    takes part, by the bundle's own feature configs)."""

    def __init__(self, inputs: BundleInputs):
        super().__init__()
        self.inputs = inputs

    def expand(self, pcoll):
        inputs = self.inputs
        return pcoll | beam.MapTuple(lambda key, wave: (key, inputs.segment(wave)))


def segment_row(key: SegmentKey, result: PredictionResult) -> dict[str, Any]:
    emo, inten = result.inference
    top = int(np.argmax(emo))
    valence, arousal = valence_arousal(emo)
    return {
        **{k: getattr(key, k) for k in ("call_id", "call_name", "path", "channel", "role", "segment_index", "start_s",
                                        "end_s")},
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
        ref = meta.ref or as_ref(meta.path)
        row = summarize_call(meta.call_id, meta.path, meta.info, rows, meta.regions_s, roles=self.roles,
                             model_id=self.model_id, schema_version=SCHEMA_VERSION)
        yield {**row, "call_name": ref.call_name, **dict(ref.metadata)}
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
    """Rows -> `folder/table/date=D/part-*.parquet`, counting rows as `<table>_written` (and
    errors rows by code as `errors_by_code.<code>`)."""

    def __init__(self, folder: str, table: str, schema, date: str):
        super().__init__()
        self.folder, self.table, self.schema, self.date = folder, table, schema, date

    def expand(self, rows):
        counter = Metrics.counter(NAMESPACE, f"{self.table}_written")
        by_code = self.table == "errors"

        def count(row):
            counter.inc()
            if by_code:
                Metrics.counter(NAMESPACE, f"errors_by_code.{row['error']}").inc()
            return row

        prefix = FileSystems.join(self.folder, self.table, f"date={self.date}", "part")
        return rows | "Count" >> beam.Map(count) | "Parquet" >> beam.io.WriteToParquet(
            prefix, self.schema, file_name_suffix=".parquet", codec="snappy")


def build(p: beam.Pipeline, opts: ScoreCallsOptions, staging: str, refs: Sequence[CallRef] = (),
          meta_columns: Sequence[str] = ()) -> None:
    """The job's graph: refs -> segment + trim -> model inputs -> RunInference -> rows -> Parquet."""
    inputs, model_id = read_bundle_inputs(localize_bundle(opts.model))
    feature_cfg = inputs.feature_config
    roles = parse_roles(opts.roles)
    seg_cfg = SegmentConfig(vad_threshold=opts.vad_threshold, vad_backend=opts.vad_backend, pad_s=opts.pad_s,
                            min_speech_s=opts.min_speech_s, min_silence_s=opts.min_silence_s,
                            max_segment_s=opts.max_segment_s or inputs.window_s, roles=roles)
    split = (
        p
        | "MatchRecordings" >> MatchRecordings(refs)
        | "SegmentAndTrim" >> beam.ParDo(SegmentAndTrimFn(seg_cfg, feature_cfg, opts.numeric_threads)).with_outputs(
            SegmentAndTrimFn.CALLS, SegmentAndTrimFn.ERRORS, main="segments")
    )
    segments = (
        split.segments
        | "ExtractFeatures" >> ExtractFeatures(inputs)
        | "RunInference" >> RunInference(KeyedModelHandler(
            BundleModelHandler(opts.model, opts.inference_batch_size, opts.numeric_threads)))
        | "ToSegmentRows" >> beam.MapTuple(segment_row)
    )
    summary = (split.calls, segments) | "SummarizeCalls" >> SummarizeCalls(roles, model_id)
    summary.segments | "WriteSegments" >> WriteTable(staging, "segments", SEGMENTS, opts.date)
    summary.calls | "WriteCalls" >> WriteTable(staging, "calls", calls_schema(meta_columns), opts.date)
    split.errors | "WriteErrors" >> WriteTable(staging, "errors", ERRORS, opts.date)


def parse_roles(text: str) -> tuple[str, ...]:
    return tuple(r.strip() for r in text.split(",") if r.strip())


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def _files(folder: str) -> list[str]:
    if not FileSystems.exists(folder):
        return []
    return sorted(m.path for r in FileSystems.match([FileSystems.join(folder, "*")]) for m in r.metadata_list)


def _read(files: Sequence[str]) -> list[pa.Table]:
    out = []
    for f in files:
        if f.endswith(".parquet"):
            with FileSystems.open(f, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
                out.append(pq.read_table(pa.BufferReader(fh.read())))
    return out


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in `schema` (missing columns null, types cast), keeping extra columns at the end
    (metadata columns of earlier runs) as strings."""
    cols, fields = [], []
    for field in schema:
        if field.name in table.column_names:
            cols.append(table[field.name].cast(field.type))
        else:
            cols.append(pa.nulls(len(table), field.type))
        fields.append(field.with_nullable(True) if field.name not in table.column_names else field)
    for name in table.column_names:
        if name not in schema.names and name != "date":
            cols.append(table[name].cast(pa.string()))
            fields.append(pa.field(name, pa.string()))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata=schema.metadata))


def merge_partition(staged: Sequence[pa.Table], existing: Sequence[pa.Table], schema: pa.Schema,
                    replaced_ids: set[str], replaced_paths: set[str]) -> pa.Table:
    """This run's rows of one table, plus the earlier rows of the date whose call_id and path
    are not among the calls this run scored."""
    parts = [_conform(t, schema) for t in staged]
    for t in existing:
        keep = np.ones(len(t), bool)
        if "call_id" in t.column_names:
            keep &= ~np.isin(t["call_id"].to_numpy(zero_copy_only=False), list(replaced_ids))
        if "path" in t.column_names:
            keep &= ~np.isin(t["path"].to_numpy(zero_copy_only=False), list(replaced_paths))
        parts.append(_conform(t.filter(pa.array(keep)), schema))
    if not parts:
        return schema.empty_table()
    merged = pa.concat_tables(parts, promote_options="permissive")
    return merged


def _swap_in(src: str, dst_dir: str, run_dir: str, table: str) -> None:
    """`src` becomes the partition's only file, `dst_dir/part-0.parquet` (see the module doc)."""
    final = FileSystems.join(dst_dir, PART)
    legacy = [f for f in _files(dst_dir) if PurePosixPath(f).name != PART]
    if _is_local(dst_dir):
        if legacy:  # a partition of an older layout: swap the folders (a reader sees old, then new)
            new_dir, old_dir = os.path.join(run_dir, f"new-{table}"), os.path.join(run_dir, f"old-{table}")
            os.makedirs(new_dir, exist_ok=True)
            os.replace(src, os.path.join(new_dir, PART))
            os.rename(dst_dir, old_dir)
            os.rename(new_dir, dst_dir)
            shutil.rmtree(old_dir, ignore_errors=True)
        else:
            os.makedirs(dst_dir, exist_ok=True)
            os.replace(src, final)
    else:
        FileSystems.rename([src], [final])
        if legacy:
            FileSystems.delete(legacy)


def publish(staging: str, output: str, date: str, replace_partition: bool = False,
            schemas: dict[str, pa.Schema] | None = None) -> dict[str, int]:
    """Merge (or with `replace_partition`, replace) each table's `date=` partition of `output`
    with the staged rows, written whole to staging first, then swapped in. Returns rows per table."""
    schemas = {"segments": SEGMENTS, "calls": CALLS, "errors": ERRORS, **(schemas or {})}
    staged = {t: _read(_files(FileSystems.join(staging, t, f"date={date}"))) for t in TABLE_NAMES}
    ids, paths = set(), set()
    for t in ("calls", "errors"):
        for tab in staged[t]:
            ids.update(tab["call_id"].to_pylist())
            paths.update(tab["path"].to_pylist())
    merged_dir = FileSystems.join(staging, "_merged")
    FileSystems.mkdirs(merged_dir)
    rows = {}
    files = {}
    for t in TABLE_NAMES:
        existing = [] if replace_partition else _read(_files(FileSystems.join(output, t, f"date={date}")))
        table = merge_partition(staged[t], existing, schemas[t], ids, paths)
        files[t] = FileSystems.join(merged_dir, f"{t}.parquet")
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, compression="snappy")
        with FileSystems.create(files[t]) as fh:
            fh.write(buf.getvalue().to_pybytes())
        rows[t] = len(table)
    for t in TABLE_NAMES:  # everything is written: now swap, table by table
        _swap_in(files[t], FileSystems.join(output, t, f"date={date}"), staging, t)
    FileSystems.delete([staging])
    return rows


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


USAGE = "python -m pipelines.score_calls --input GLOB --output DIR [--date YYYY-MM-DD] [options]"


def parse_options(argv: Sequence[str] | None) -> tuple[PipelineOptions, ScoreCallsOptions]:
    """Beam's options and the job's, strictly: an unknown option, a bad value or a missing
    --input/--output exits 2 with argparse's message (Beam alone would drop unknown ones)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _BeamArgumentParser(prog="score_calls", usage=USAGE, allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 — as PipelineOptions.get_all_options does
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not known.input or not known.output:
        parser.error("--input and --output are required")
    if not parse_roles(known.roles):
        parser.error("--roles needs at least one role")
    if known.numeric_threads < 1:
        parser.error("--numeric_threads must be at least 1")
    opts = PipelineOptions(argv)
    opts.view_as(SetupOptions).save_main_session = False
    return opts, opts.view_as(ScoreCallsOptions)


def run(argv: Sequence[str] | None = None) -> dict[str, int]:
    """Run the job; returns its counters (files_matched, calls_written, errors_written,
    errors_by_code.<code>, ...). Raises SystemExit(2) on bad options, UsageError on a bad
    manifest and NothingMatched when the input matches no file (nothing is touched)."""
    opts, job = parse_options(argv)
    pattern = job.input if not _is_local(job.input) else os.path.abspath(job.input)
    manifest = read_manifest(job.manifest) if job.manifest else None
    paths = match_inputs(pattern)
    if not paths:
        raise NothingMatched(f"--input {job.input} matched no file; the tables of {job.date} are untouched")
    refs = assign_calls(paths, input_root(pattern), manifest)
    meta_columns = [c for c, _ in refs[0].metadata] if refs else []
    output = job.output if not _is_local(job.output) else os.path.abspath(job.output)
    staging = FileSystems.join(output, "_staging", f"{job.date}-{uuid.uuid4().hex[:8]}")
    try:
        with beam.Pipeline(runner=local_runner(opts), options=opts) as p:
            build(p, job, staging, refs, meta_columns)
    except BaseException:
        if FileSystems.exists(staging):
            FileSystems.delete([staging])
        raise
    result = p.result
    publish(staging, output, job.date, job.replace_partition, {"calls": calls_schema(meta_columns)})
    c = counters(result)
    matched, calls, errors = c.get("files_matched", 0), c.get("calls_written", 0), c.get("errors_written", 0)
    ok = matched == calls + errors
    (LOG.info if ok else LOG.error)("reconciliation: files matched %d, calls written %d, errors written %d%s",
                                    matched, calls, errors, "" if ok else "  MISMATCH")
    by_code = sorted((k.split(".", 1)[1], v) for k, v in c.items() if k.startswith("errors_by_code."))
    print(f"reconciliation: files matched {matched}, calls written {calls}, errors written {errors}"
          f"{'' if ok else ' (MISMATCH: some files are unaccounted for)'}; "
          f"{'merged into' if not job.replace_partition else 'replaced'} "
          f"{output.rstrip('/')}/{{segments,calls,errors}}/date={job.date}/")
    print("errors by code: " + (", ".join(f"{k} {v}" for k, v in by_code) if by_code else "none"))
    return c


def exit_code(c: dict[str, int]) -> int:
    """0 when every matched file is a calls or an errors row (errors rows are outcomes, not
    failures), 4 when the reconciliation does not balance."""
    return EXIT_OK if c.get("files_matched", 0) == c.get("calls_written", 0) + c.get("errors_written", 0) \
        else EXIT_UNRECONCILED


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: runs the job and returns its exit code (module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    level = _early_log_level(argv)
    setup_logging(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING")
    try:
        return exit_code(run(argv))
    except (UsageError, NothingMatched) as exc:
        print(f"score_calls: error: {exc}", file=sys.stderr)
        return exc.exit_code

