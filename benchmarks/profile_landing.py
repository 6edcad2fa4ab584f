"""Where event landing spends its time: seconds per SQL statement of `_load_event_rows`, and in total.

    .venv/bin/python -m benchmarks.profile_landing [--landing benchmarks/cache/M/landing] [--files 80]

Ingests the newest `--files` event files of a landing folder (as `make bench` caches them) into a fresh
DuckDB file in a temporary directory, with the pipeline's batch size and memory limit, and prints the time of
each statement (first 60 characters) next to the whole ingestion's. Nothing of the warehouse is touched.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import duckdb

from orchestration import landing
from orchestration.settings import duckdb_memory_limit


class TimedConnection:
    """Passes everything to a DuckDB connection, adding up the seconds spent in each distinct statement."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, seconds: dict[str, float]) -> None:
        self._conn = conn
        self._seconds = seconds

    def execute(self, sql: str, *args):
        started = time.perf_counter()
        try:
            return self._conn.execute(sql, *args)
        finally:
            self._seconds[" ".join(sql.split())[:60]] += time.perf_counter() - started

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def profile(landing_dir: Path, newest_files: int, batch_lines: int) -> None:
    files = landing.discover_files(landing_dir, "events")[-newest_files:]
    seconds: dict[str, float] = defaultdict(float)
    load_rows = landing._load_event_rows
    landing._load_event_rows = lambda conn: load_rows(TimedConnection(conn, seconds))
    try:
        with tempfile.TemporaryDirectory() as folder, duckdb.connect(str(Path(folder) / "p.duckdb")) as conn:
            conn.execute(f"set memory_limit = '{duckdb_memory_limit()}'")
            landing.ensure_landing_tables(conn)
            started = time.perf_counter()
            stats = landing.ingest_events(conn, files, salt="profile-salt", batch_lines=batch_lines)
            total = time.perf_counter() - started
    finally:
        landing._load_event_rows = load_rows
    print(f"{len(files)} files, {sum(s.read for s in stats):,} lines, {total:.1f} s in ingest_events")
    for statement, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"{spent:8.2f} s  {100 * spent / total:5.1f}%  {statement}")
    rest = total - sum(seconds.values())
    print(f"{rest:8.2f} s  {100 * rest / total:5.1f}%  (the rest: reading and splitting files in Python, the manifest)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, default=Path("benchmarks/cache/M/landing"))
    parser.add_argument("--files", type=int, default=80, help="how many of the newest event files")
    parser.add_argument("--batch-lines", type=int, default=landing.EVENT_BATCH_LINES)
    args = parser.parse_args(argv)
    if not (args.landing / "events").is_dir():
        parser.error(f"no events folder under {args.landing}: run `make bench` first, or pass --landing")
    profile(args.landing, args.files, args.batch_lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
