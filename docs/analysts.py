"""Run the recipes of docs/analysts.md against a job output folder and print their results.

    python docs/analysts.py out/ [examples/calls/agents.csv]
    python docs/analysts.py --write-doc    # rerun the job on the example calls (default model) and
                                           # rewrite the printed block of docs/analysts.md
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 20)
pd.set_option("display.precision", 3)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "analysts.md"
AGENTS = ROOT / "examples" / "calls" / "agents.csv"
EXAMPLE_DATE = "2026-11-24"
REGENERATE = "python docs/analysts.py --write-doc"
# the ```text block right after this heading (and its "regenerate with" line) is the printed output
BLOCK = re.compile(r"(^## What it printed \(bundled model, the four example calls\)\n(?:(?!```)[^\n]*\n)*?```text\n)"
                   r"([\s\S]*?)(^```$)", re.M)


def main(out: str, agents_csv: str) -> None:
    calls = pd.read_parquet(f"{out}/calls")
    segments = pd.read_parquet(f"{out}/segments")
    agents = pd.read_csv(agents_csv)

    print("## 1. Worst calls of the day (pandas)")
    worst = calls.nsmallest(3, "satisfaction_proxy")
    print(worst[["date", "call_id", "satisfaction_proxy", "customer_dominant_emotion", "customer_start_emotion",
                 "customer_end_emotion", "customer_valence_trend"]].to_string(index=False))

    print("\n## 1. Worst calls of the day (DuckDB)")
    print(duckdb.sql(f"""
        select date, call_id, round(satisfaction_proxy, 3) as satisfaction, customer_dominant_emotion
        from read_parquet('{out}/calls/*/*.parquet', hive_partitioning = 1)
        order by satisfaction_proxy limit 3
    """))

    print("## 2. Customer emotion trend per agent (pandas)")
    per_agent = (calls.merge(agents, on="call_id")
                 .groupby("agent_id")
                 .agg(calls=("call_id", "count"),
                      customer_valence_start=("customer_valence_start", "mean"),
                      customer_valence_end=("customer_valence_end", "mean"),
                      satisfaction=("satisfaction_proxy", "mean"))
                 .sort_values("satisfaction"))
    print(per_agent.to_string())

    print("\n## 3. Share of angry customer time (DuckDB)")
    print(duckdb.sql(f"""
        select call_id,
               round(sum((end_s - start_s) * p_angry) / sum(end_s - start_s), 3) as angry_share,
               round(sum(end_s - start_s), 1) as customer_segment_s
        from read_parquet('{out}/segments/*/*.parquet', hive_partitioning = 1)
        where role = 'customer'
        group by call_id order by angry_share desc
    """))
    day = segments[segments["role"] == "customer"]
    dur = day["end_s"] - day["start_s"]
    print(f"whole day: {(dur * day['p_angry']).sum() / dur.sum():.3f} of customer speech time is angry "
          f"(duration-weighted probability)")


def printed(out: str | os.PathLike, agents_csv: str | os.PathLike = AGENTS) -> str:
    """What `main` prints, as text."""
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        main(str(out), str(agents_csv))
    return buf.getvalue()


def doc_block(doc_text: str) -> str:
    """The printed block of analysts.md (between ```text and ```)."""
    m = BLOCK.search(doc_text)
    if m is None:
        raise ValueError(f"{DOC}: no ```text block under '## What it printed ...'")
    return m.group(2)


def run_example_job(out: str | os.PathLike) -> None:
    """The job on the example calls with the default model, from this checkout (not an installed
    copy), its encoder held to float32: the same figures on every CPU, where the shipped int8
    encoder's kernels differ by CPU and can flip a near-tied label."""
    sys.path.insert(0, str(ROOT))
    from pipelines import score_calls
    import ser_core
    from ser_core import encoder_bundle
    assert Path(ser_core.__file__).resolve().is_relative_to(ROOT), f"ser_core imported from {ser_core.__file__}, not {ROOT}"
    load = encoder_bundle.load_encoder
    encoder_bundle.load_encoder = lambda name, **kw: load(name, **{**kw, "precision": "float32"})
    try:  # the in-process runner loads the bundle in this process
        score_calls.run([f"--input={ROOT / 'examples' / 'calls'}/*.wav", f"--output={out}", f"--date={EXAMPLE_DATE}",
                         "--model=default"])
    finally:
        encoder_bundle.load_encoder = load


def write_doc() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_example_job(tmp)
        text = printed(tmp)
    old = DOC.read_text(encoding="utf-8")
    doc_block(old)  # fails loudly when the block is missing
    new = BLOCK.sub(lambda m: m.group(1) + text + m.group(3), old, count=1)
    DOC.write_text(new, encoding="utf-8")
    print(f"{DOC}: printed block {'unchanged' if new == old else 'rewritten'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="the job's --output folder")
    parser.add_argument("agents_csv", nargs="?", default="examples/calls/agents.csv")
    parser.add_argument("--write-doc", action="store_true", help=f"rewrite the printed block of {DOC.name}")
    args = parser.parse_args()
    if args.write_doc == bool(args.out):
        parser.error("give either an output folder or --write-doc")
    write_doc() if args.write_doc else main(args.out, args.agents_csv)
