"""Parquet table schemas: the single source of truth for every table the job writes.

Bump SCHEMA_VERSION on any change: MAJOR when a column is removed, renamed or changes
type, MINOR when a column is added. Every row carries the version it was written with.
"""
from __future__ import annotations

import pyarrow as pa

from ser_core.labels import EMOTIONS

SCHEMA_VERSION = "1.1"  # 1.1: segments.wideband
ROLES: tuple[str, ...] = ("agent", "customer", "mixed")  # mixed: a mono recording, both parties


def _schema(fields: list[pa.Field], table: str) -> pa.Schema:
    return pa.schema(fields, metadata={"table": table, "schema_version": SCHEMA_VERSION})


SEGMENTS = _schema(
    [
        pa.field("call_id", pa.string(), nullable=False),
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
        pa.field("path", pa.string(), nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("channels", pa.int16(), nullable=False),
        *[pa.field(f"{r}_talk_s", pa.float64(), nullable=False) for r in ROLES],
        pa.field("silence_s", pa.float64(), nullable=False),
        pa.field("overlap_s", pa.float64(), nullable=False),
        pa.field("n_segments", pa.int32(), nullable=False),
        *[pa.field(f"{r}_segments", pa.int32(), nullable=False) for r in ROLES],
        *[pa.field(f"{r}_share_{e}", pa.float32()) for r in ROLES for e in EMOTIONS],
        pa.field("customer_role", pa.string(), nullable=False),
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
        pa.field("path", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("schema_version", pa.string(), nullable=False),
    ],
    "errors",
)

TABLES: dict[str, pa.Schema] = {"segments": SEGMENTS, "calls": CALLS, "errors": ERRORS}
