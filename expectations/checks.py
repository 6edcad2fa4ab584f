"""Turn any Great Expectations suite into a Dagster asset check on a DuckDB table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import great_expectations as gx

from expectations.validate import FailedExpectation, ValidationSummary, validate_table


def gx_asset_check(
    suite: gx.ExpectationSuite,
    asset_key: dg.AssetKey | str | list[str] | dg.AssetsDefinition,
    table: str,
    blocking: bool,
    database_path_fn: Callable[[], str | Path],
) -> dg.AssetChecksDefinition:
    """One factory for every suite, so all GX checks are named, reported and gated the same way.

    `database_path_fn` is called when the check runs (not when definitions load), so the warehouse
    path can come from the environment or CLI flags of that run.
    """

    @dg.asset_check(
        asset=asset_key,
        name=f"gx_{suite.name}",
        blocking=blocking,
        description=f"Great Expectations suite `{suite.name}` ({len(suite.expectations)} expectations) "
        f"on `{table}`",
        metadata={"table": table, "suite": suite.name},
    )
    def _gx_check() -> dg.AssetCheckResult:
        return check_result(validate_table(database_path_fn(), table, suite), blocking)

    return _gx_check


def check_result(summary: ValidationSummary, blocking: bool) -> dg.AssetCheckResult:
    """Blocking suites fail as ERROR (stops downstream assets); the others only WARN."""
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "evaluated_expectations": summary.evaluated_count,
            "failed_expectations": len(summary.failed),
            "failures": dg.MetadataValue.md(failures_markdown(summary.failed)),
            "elapsed_seconds": round(summary.elapsed_seconds, 3),
        },
    )


def failures_markdown(failed: tuple[FailedExpectation, ...]) -> str:
    """A table a person can read in the Dagster UI to see what broke and where."""
    if not failed:
        return "All expectations passed."
    header = "| expectation | column | observed | unexpected rows | examples |\n|---|---|---|---|---|"
    rows = [
        "| "
        + " | ".join(
            _cell(value)
            for value in (
                failure.expectation_type,
                failure.column,
                failure.error or failure.observed_value,
                failure.unexpected_count,
                ", ".join(map(str, failure.unexpected_examples)),
            )
        )
        + " |"
        for failure in failed
    ]
    return "\n".join([header, *rows])


def _cell(value: Any) -> str:
    """Keep a value on one table cell: no pipes or newlines, long values cut."""
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."
