"""Run the recipes of docs/analysts.md against a job output folder and print their results.

    python docs/analysts.py out/ [examples/calls/agents.csv]
"""
from __future__ import annotations

import sys

import duckdb
import pandas as pd

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 20)
pd.set_option("display.precision", 3)


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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "examples/calls/agents.csv")
