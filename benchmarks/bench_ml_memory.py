"""Peak memory of the clusters and CLV assets on a large synthetic warehouse: whole-table reads vs batches.

Usage: ``python -m benchmarks.bench_ml_memory [--people N] [--warehouse PATH]`` (default 2,000,000 people, a
DuckDB file under /tmp, built once and reused). Every measurement runs in its own subprocess and reports wall
time, CPU time and peak resident memory above the level after imports (5 ms samples, as bench_identity):

- ``before``: the asset bodies as they were, the whole input read with ``.df()`` and scored in memory
  (``assign_with_previous`` on every consenting person; ``rfm_summary`` of every paid transaction);
- ``after``: the asset functions ``user_clusters`` and ``user_clv`` as they are now, called directly with
  their default config (fit on a bounded hash sample, everyone read, scored and written in batches of 100,000).

The synthetic warehouse holds only the tables these two assets read: per-person features and consent,
3 events and ~1.2 paid orders per person. DuckDB's own working memory (the aggregates and sorts behind the
queries) counts too; it is capped by the resource's HUAXIANG_DUCKDB_MEMORY_LIMIT, which
``--duckdb-memory-limit 300MB`` sets for every step (DuckDB spills beyond it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import date
from pathlib import Path

import duckdb

from benchmarks.bench_identity import measure

AS_OF = date(2026, 6, 30)
STEPS = ("clusters_before", "clusters_after", "clv_before", "clv_after")


def build_warehouse(path: Path, people: int) -> None:
    """Per-person features, consents, events and paid orders, random but fixed by the seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as conn:
        conn.execute("select setseed(0.42)")
        conn.execute("create schema marts; create schema intermediate; create schema ml")
        conn.execute(
            f"""
            create table marts.user_features as
            select 'p' || lpad(i::varchar, 9, '0') as user_key,
                   buyer_orders as frequency, 1 + (random() * 60)::bigint as active_days,
                   random() as share_morning, random() as share_daytime, random() as share_evening,
                   random() as share_late_night, random() as share_article, random() as share_video,
                   random() as share_live,
                   case when buyer_orders > 0 then random() end as coupon_use_rate,
                   case when buyer_orders > 0 then random() end as discount_share,
                   case when buyer_orders > 0 then 20 + random() * 500 end as avg_order_value,
                   30 + random() * 300 as avg_dwell_seconds,
                   case when buyer_orders > 0 then random() end as full_price_item_share,
                   case when buyer_orders > 0 then 10 + random() * 200 end as avg_item_price,
                   (random() * 20)::bigint as shares_sent, (random() * 30)::bigint as group_messages,
                   (random() * 3)::bigint as consultations, (random() * 900)::bigint as video_seconds
            from (select range as i, case when random() < 0.6 then 1 + (random() * 3)::bigint else 0 end
                  as buyer_orders from range({people}))
            """
        )
        conn.execute(
            "create table intermediate.int_user_consents as select user_key,"
            " random() < 0.95 as has_profiling_consent, random() < 0.9 as has_personalization_consent"
            " from marts.user_features"
        )
        conn.execute(
            "create table intermediate.int_events_as_of as"
            " select user_key, date '2025-01-01' + (random() * 545)::integer as occurred_date"
            " from marts.user_features, range(3)"
        )
        conn.execute(
            "create table intermediate.int_orders_as_of as"
            " select user_key, 'o' || row_number() over () as order_id, true as is_paid,"
            " date '2025-01-01' + (random() * 545)::integer as ordered_date,"
            " round(10 + random() * 500, 2)::decimal(18, 2) as paid_amount"
            " from marts.user_features, range(4) as t(n) where n < frequency"
        )


def run_step(step: str, warehouse: Path) -> dict:
    """One measurement, in this process: the caller starts a fresh interpreter per step."""
    from ml_assets.clustering import ClusteringConfig, assign_with_previous
    from ml_assets.clv import fit_bgnbd, fit_gamma_gamma, rfm_summary, score_customers
    from orchestration.ml_models import (
        BEHAVIOUR_COLUMNS,
        ORDERED_TRANSACTIONS_SQL,
        UserClustersConfig,
        UserClvConfig,
        backtest_metadata,
        clv_table,
        read_behaviour,
        user_clusters,
        user_clv,
    )
    from orchestration.resources import HuaxiangResource, replace_table
    from orchestration.settings import DEV_PII_SALT, Settings

    settings = Settings(
        landing_dir=Path(tempfile.mkdtemp()),
        warehouse_path=warehouse,
        timezone="Asia/Shanghai",
        pii_salt=DEV_PII_SALT,
        as_of=AS_OF,
    )
    resource = HuaxiangResource.from_settings(settings)
    with resource.connect() as conn:
        conn.execute("drop table if exists ml.cluster_models")  # every clustering step is a first fit

    # The asset bodies before batching, on the same resource (so the same DuckDB settings) as the assets.
    def clusters_before() -> int:
        with resource.connect() as conn:
            behaviour, _ = read_behaviour(conn)
            _, assignments, _ = assign_with_previous(None, behaviour, BEHAVIOUR_COLUMNS, ClusteringConfig())
            replace_table(conn, "ml.user_clusters", assignments)
            return len(assignments)

    def clv_before() -> int:
        with resource.connect() as conn:
            transactions = conn.execute(ORDERED_TRANSACTIONS_SQL).df()
            summary = rfm_summary(transactions, AS_OF)
            bgnbd, gamma_gamma = fit_bgnbd(summary), fit_gamma_gamma(summary)
            scores = score_customers(summary, bgnbd.params, gamma_gamma.params, horizon=26.0)
            replace_table(conn, "ml.user_clv", clv_table(summary, scores, 26.0))
            backtest_metadata(transactions, AS_OF, 13)
            return len(summary)

    def clusters_after() -> int:
        list(user_clusters(huaxiang=resource, config=UserClustersConfig()))
        return count_rows("ml.user_clusters")

    def clv_after() -> int:
        user_clv(huaxiang=resource, config=UserClvConfig())
        return count_rows("ml.user_clv")

    def count_rows(table: str) -> int:
        with resource.connect() as conn:
            return int(conn.execute(f"select count(*) from {table}").fetchall()[0][0])

    steps = {
        "clusters_before": clusters_before,
        "clusters_after": clusters_after,
        "clv_before": clv_before,
        "clv_after": clv_after,
    }
    rows, measurement = measure(steps[step])
    with resource.connect() as conn:
        limit = conn.execute("select current_setting('memory_limit')").fetchall()[0][0]
    return {"rows": rows, "duckdb_memory_limit": limit, **asdict(measurement)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2_000_000)
    parser.add_argument("--warehouse", type=Path, default=None)
    parser.add_argument(
        "--duckdb-memory-limit", default=None, help="e.g. 300MB, as HUAXIANG_DUCKDB_MEMORY_LIMIT for every step"
    )
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warehouse = args.warehouse or Path(tempfile.gettempdir()) / f"huaxiang_ml_memory_{args.people}.duckdb"
    if args.step:
        print(json.dumps(run_step(args.step, warehouse)))
        return
    if not warehouse.exists():
        print(f"building {warehouse} with {args.people:,} people ...", flush=True)
        build_warehouse(warehouse, args.people)
    results = {}
    for step in STEPS:
        command = [sys.executable, "-m", "benchmarks.bench_ml_memory", "--warehouse", str(warehouse), "--step", step]
        environment = dict(os.environ)
        if args.duckdb_memory_limit:
            environment["HUAXIANG_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory_limit
        completed = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
        results[step] = json.loads(completed.stdout.strip().splitlines()[-1])
        r = results[step]
        print(
            f"{step:<16} {r['rows']:>10,} rows {r['seconds']:8.1f} s wall {r['cpu_seconds']:8.1f} s CPU"
            f" {r['peak_megabytes']:8.0f} MB peak above baseline (DuckDB memory_limit {r['duckdb_memory_limit']})",
            flush=True,
        )
    for asset in ("clusters", "clv"):
        before, after = results[f"{asset}_before"], results[f"{asset}_after"]
        ratio = before["peak_megabytes"] / max(after["peak_megabytes"], 1)
        print(f"{asset}: peak memory before / after = {ratio:.1f}x")


if __name__ == "__main__":
    main()
