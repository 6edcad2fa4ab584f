"""The one-screen run report: where things are, rows per layer, quarantine reasons, checks, timings."""

from __future__ import annotations

from collections import Counter

import duckdb

from orchestration.settings import Settings

LAYER_SCHEMAS = ("raw", "staging", "intermediate", "identity", "marts", "quarantine")


def table_counts(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    tables = conn.execute(
        "select table_schema, table_name from information_schema.tables "
        f"where table_type = 'BASE TABLE' and table_schema in {LAYER_SCHEMAS} order by 1, 2"
    ).fetchall()
    return [(s, t, conn.execute(f'select count(*) from "{s}"."{t}"').fetchall()[0][0]) for s, t in tables]


def quarantine_reasons(conn: duckdb.DuckDBPyConnection, limit: int = 12) -> list[tuple[str, str, int]]:
    return conn.execute(
        "select source, reason, count(*) as n from quarantine.rejected_records "
        "group by all order by n desc, source, reason limit ?",
        [limit],
    ).fetchall()


def step_timings(result) -> list[tuple[str, float]]:
    timings = []
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            timings.append((event.step_key, event.event_specific_data.duration_ms / 1000))
    return timings


def check_outcomes(result) -> Counter:
    outcomes: Counter = Counter()
    for evaluation in result.get_asset_check_evaluations():
        severity = getattr(evaluation.severity, "value", str(evaluation.severity))
        outcomes["passed" if evaluation.passed else f"failed ({severity})"] += 1
    return outcomes


def failed_checks(result) -> list[str]:
    return [
        f"{e.asset_key.to_user_string()}:{e.check_name}" for e in result.get_asset_check_evaluations() if not e.passed
    ]


def print_summary(settings: Settings, result, elapsed_seconds: float) -> None:
    status = "SUCCESS" if result.success else "FAILED"
    print(f"\n=== Huaxiang run {status} in {elapsed_seconds:.1f}s (as-of {settings.as_of_date()}) ===")
    print(f"landing:    {settings.landing_dir}")
    print(f"warehouse:  {settings.warehouse_path}")
    print(f"published:  {settings.published_path}" + ("" if settings.published_path.exists() else " (not yet)"))
    print(f"report:     {settings.report_path}" + ("" if settings.report_path.exists() else " (not yet)"))
    if settings.warehouse_path.exists():
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
            rows = table_counts(conn)
            print("\nrows by layer:")
            for schema, table, count in rows:
                if schema in ("raw", "marts", "identity", "quarantine"):
                    print(f"  {schema + '.' + table:<38} {count:>12,}")
            if any(s == "quarantine" for s, _, _ in rows):
                reasons = quarantine_reasons(conn)
                if reasons:
                    print("\nquarantined records by reason:")
                    for source, reason, count in reasons:
                        print(f"  {count:>8,}  {source:<16} {reason}")
    outcomes = check_outcomes(result)
    print("\nchecks: " + (", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "none ran"))
    for name in failed_checks(result):
        print(f"  failed: {name}")
    print("\nslowest steps:")
    for step, seconds in sorted(step_timings(result), key=lambda x: -x[1])[:6]:
        print(f"  {seconds:8.1f}s  {step}")
    if not result.success:
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                error = event.event_specific_data.error
                # Dagster wraps the asset's exception; its cause carries the message a person can act on.
                message = (error.cause or error).message.strip() if error else "unknown error"
                print(f"\nstep {event.step_key} failed: {message}")
