"""Parquet table schemas: the single source of truth for every table the job writes.

Bump SCHEMA_VERSION on any change: MAJOR when a column is removed, renamed or changes
type, MINOR when a column is added. Every row carries the version it was written with.
"""
from __future__ import annotations

import pyarrow as pa

from ser_core.labels import EMOTIONS

SCHEMA_VERSION = "2.0"
# 1.1: segments.wideband
# 2.0: call_id is the path under the input glob's fixed prefix (or the manifest's), not the
#      file's stem; call_name (the stem) in all tables; errors.call_id; calls.samples_repaired,
#      truncated, channels_ignored and any --manifest metadata columns (strings); role columns
#      are null where the role does not apply (agent_*/customer_* of a mono call, mixed_* of a
#      stereo one), and so are customer_role and satisfaction_proxy of a mono call.
ROLES: tuple[str, ...] = ("agent", "customer", "mixed")  # mixed: a mono recording, both parties


def _schema(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(fields, metadata={"table": table, "schema_version": SCHEMA_VERSION})


SEGMENTS = _schema(
    [
        pa.field("call_id", pa.string(), nullable=False),
        pa.field("call_name", pa.string()),  # the file's stem, for people (not unique)
        pa.field("path", pa.string(), nullable=False),
        pa.field("channel", pa.int16(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("segment_index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        *[pa.field(f"p_{e}", pa.float32(), nullable=False) for e in EMOTIONS],
        pa.field("emotion", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("intensity", pa.string(), nullable=False),
        pa.field("p_strong", pa.float32(), nullable=False),
        pa.field("valence", pa.float32(), nullable=False),
        pa.field("arousal", pa.float32(), nullable=False),
        pa.field("loudness_dbfs", pa.float32(), nullable=False),
        pa.field("wideband", pa.bool_(), nullable=False),  # the bundle's wideband companion scored it too
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.string(), nullable=False),
    ],
    "segments",
)

CALLS = _schema(
    [
        pa.field("call_id", pa.string(), nullable=False),
        pa.field("call_name", pa.string()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),  # of the frames that could be read
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("channels", pa.int16(), nullable=False),
        pa.field("samples_repaired", pa.int64()),   # non-finite samples (NaN/inf) read as 0 and scored around
        pa.field("truncated", pa.bool_()),          # the file holds fewer frames than its header promises
        pa.field("channels_ignored", pa.int16()),   # channels beyond --roles, not scored
        *[pa.field(f"{r}_talk_s", pa.float64()) for r in ROLES],  # null: the role does not apply
        pa.field("silence_s", pa.float64(), nullable=False),
        pa.field("overlap_s", pa.float64(), nullable=False),
        pa.field("n_segments", pa.int32(), nullable=False),
        *[pa.field(f"{r}_segments", pa.int32()) for r in ROLES],
        *[pa.field(f"{r}_share_{e}", pa.float32()) for r in ROLES for e in EMOTIONS],
        pa.field("customer_role", pa.string()),  # "customer"; null for a mono call (agent and customer mixed)
        pa.field("customer_dominant_emotion", pa.string()),
        pa.field("customer_start_emotion", pa.string()),
        pa.field("customer_end_emotion", pa.string()),
        pa.field("customer_valence_start", pa.float32()),
        pa.field("customer_valence_end", pa.float32()),
        pa.field("customer_valence_trend", pa.float32()),
        pa.field("satisfaction_proxy", pa.float32()),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("schema_version", pa.string(), nullable=False),
    ],
    "calls",
)

ERRORS = _schema(
    [
        pa.field("call_id", pa.string()),
        pa.field("call_name", pa.string()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("schema_version", pa.string(), nullable=False),
    ],
    "errors",
)

TABLES: dict[str, pa.Schema] = {"segments": SEGMENTS, "calls": CALLS, "errors": ERRORS}


def calls_schema(metadata_columns=()) -> pa.Schema:
    """CALLS plus the run's --manifest metadata columns, appended as nullable strings."""
    return _schema([*CALLS, *[pa.field(c, pa.string()) for c in metadata_columns]], "calls")
