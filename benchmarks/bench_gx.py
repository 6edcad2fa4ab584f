"""Time GX validation of a 10M-row DuckDB table: DuckDB pushdown vs GX pandas on the loaded table.

Run: python benchmarks/bench_gx.py [--rows 10000000] [--skip-pandas]
Both paths validate the same suite (unique + not-null + in-set + between over 4 columns) on the same file.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from expectations.validate import validate_frame, validate_table  # noqa: E402

TABLE = "marts.bench_users"

BENCH_SUITE = gx.ExpectationSuite(
    name="bench_users",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToNotBeNull(column="user_key"),
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F", "U"]),
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120),
        gxe.ExpectColumnValuesToNotBeNull(column="monetary"),
        gxe.ExpectColumnValuesToBeBetween(column="monetary", min_value=0),
    ],
)


def build_table(path: Path, rows: int) -> None:
    """A dim_users-shaped table: unique string key, a 3-value category, an int and a decimal amount."""
    with duckdb.connect(str(path)) as connection:
        connection.sql("create schema marts")
        connection.sql(
            f"""
            create table {TABLE} as
            select
                'u' || lpad(i::varchar, 9, '0') as user_key,
                ['M', 'F', 'U'][1 + i % 3] as gender,
                (i % 90)::integer as age,
                round(random() * 1000, 2)::decimal(12, 2) as monetary
            from range({rows}) as numbers(i)
            """
        )


def time_pushdown(path: Path) -> float:
    """Seconds for validate_table (one aggregate scan + one group-by in DuckDB)."""
    summary = validate_table(path, TABLE, BENCH_SUITE)
    assert summary.success, summary.failed
    return summary.elapsed_seconds


def time_pandas(path: Path) -> tuple[float, float]:
    """Seconds to load the four columns into pandas, and to validate them with GX's pandas engine."""
    started = time.perf_counter()
    with duckdb.connect(str(path), read_only=True) as connection:
        frame = connection.sql(f"select user_key, gender, age, monetary from {TABLE}").df()
    loaded = time.perf_counter() - started
    summary = validate_frame(frame, BENCH_SUITE)
    assert summary.success, summary.failed
    return loaded, summary.elapsed_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--skip-pandas", action="store_true", help="only time the DuckDB pushdown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.duckdb"
        started = time.perf_counter()
        build_table(path, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - started:.1f} s")

        pushdown = time_pushdown(path)
        print(f"validate_table (DuckDB pushdown): {pushdown:.2f} s")
        pushdown_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"  peak RSS so far: {pushdown_rss:.2f} GB")
        if not args.skip_pandas:
            loaded, validated = time_pandas(path)
            total = loaded + validated
            print(f"GX pandas: load {loaded:.2f} s + validate {validated:.2f} s = {total:.2f} s")
            print(f"  peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
            print(f"pushdown speed-up: {total / pushdown:.1f}x")


if __name__ == "__main__":
    main()
