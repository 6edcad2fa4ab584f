"""Validate DuckDB tables and pandas frames against Great Expectations 1.x suites.

Tables: GX's SQL datasource cannot be used on DuckDB here (it needs the `duckdb-engine` SQLAlchemy
dialect, which is not a dependency, and even with it GX 1.24 fetches rows after closing the connection
unless `duckdb` is added to `_PERSISTED_CONNECTION_DIALECTS`). Loading a 10M-row table into pandas for
GX took ~29 s and 3.2 GB against ~5 s for DuckDB (benchmarks/bench_gx.py), so the common expectation
types are compiled to one aggregate scan in DuckDB and judged with GX's own `mostly` rule; any other
expectation is run by GX's pandas engine on only the columns it needs. `tests/unit/test_expectations.py`
checks that both paths agree.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import duckdb  # noqa: E402
import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations import expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

logger = logging.getLogger(__name__)

EXAMPLE_LIMIT = 5


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation that did not hold, with enough evidence to act on it."""

    expectation_type: str
    column: str | None
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_examples: tuple[Any, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ValidationSummary:
    """What a suite run found, in plain values that serialise into check metadata."""

    suite_name: str
    success: bool
    evaluated_count: int
    failed: tuple[FailedExpectation, ...]
    elapsed_seconds: float


# ---------------------------------------------------------------- pandas path (GX proper)


def validate_frame(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> ValidationSummary:
    """Run a suite on an in-memory frame with GX's pandas engine (meant for small frames)."""
    started = time.perf_counter()
    failed = [failure for _, failure in _gx_pandas_failures(frame, list(suite.expectations), suite.name)]
    return ValidationSummary(
        suite_name=suite.name,
        success=not failed,
        evaluated_count=len(suite.expectations),
        failed=tuple(failed),
        elapsed_seconds=time.perf_counter() - started,
    )


def _gx_pandas_failures(
    frame: pd.DataFrame, expectations: Sequence[gxe.Expectation], suite_name: str
) -> list[tuple[int, FailedExpectation]]:
    """Validate through an ephemeral context (no GX store is read or written); failures in list order."""
    if not expectations:
        return []
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    # Copies keep the caller's module-level suite free of ids from this throwaway context.
    suite = context.suites.add(
        gx.ExpectationSuite(name=suite_name, expectations=[e.copy(deep=True) for e in expectations])
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_frame", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLE_LIMIT},
    )
    # GX reorders results; the ids it gave the copies map them back to list positions.
    position = {e.id: i for i, e in enumerate(suite.expectations)}
    failures = [
        (position[r.expectation_config.id], _failure_from_gx(r)) for r in result.results if not r.success
    ]
    return sorted(failures, key=lambda pair: pair[0])


def _failure_from_gx(result: Any) -> FailedExpectation:
    """Flatten a GX ExpectationValidationResult into the summary's shape."""
    config = result.expectation_config
    details = result.result or {}
    exception = result.exception_info or {}
    error = exception.get("exception_message") if exception.get("raised_exception") else None
    return FailedExpectation(
        expectation_type=config.type,
        column=_column_label(config.kwargs),
        observed_value=_plain(details.get("observed_value")),
        unexpected_count=details.get("unexpected_count"),
        unexpected_examples=tuple(_plain(v) for v in details.get("partial_unexpected_list", []))[
            :EXAMPLE_LIMIT
        ],
        error=error,
    )


def _column_label(kwargs: dict[str, Any]) -> str | None:
    """Name the column(s) an expectation is about, for people reading the failure table."""
    if kwargs.get("column") is not None:
        return str(kwargs["column"])
    if kwargs.get("column_list"):
        return ", ".join(map(str, kwargs["column_list"]))
    if kwargs.get("column_A") is not None:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    return None


def _plain(value: Any) -> Any:
    """Turn NaN/NA and numpy scalars into JSON-friendly Python values."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is pd.NA or value is pd.NaT:
        return None
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------- DuckDB path


def validate_table(
    database: str | Path | duckdb.DuckDBPyConnection, table: str, suite: gx.ExpectationSuite
) -> ValidationSummary:
    """Run a suite on a DuckDB table, doing the heavy lifting inside DuckDB.

    `database` is a file path (opened read-only) or an open connection. A path held by a writer in
    another process fails with duckdb.IOException ("Could not set lock on file") rather than wait;
    inside the writing process the read-only open is refused, so the writer's database is joined
    with a plain connection instead (only SELECTs are issued).
    """
    started = time.perf_counter()
    if isinstance(database, duckdb.DuckDBPyConnection):
        failed = _table_failures(database, table, suite)
    else:
        with _open_for_reading(Path(database)) as connection:
            failed = _table_failures(connection, table, suite)
    return ValidationSummary(
        suite_name=suite.name,
        success=not failed,
        evaluated_count=len(suite.expectations),
        failed=tuple(failed),
        elapsed_seconds=time.perf_counter() - started,
    )


def _open_for_reading(path: Path) -> duckdb.DuckDBPyConnection:
    """Open read-only so validation never takes the writer's lock."""
    if not path.exists():
        raise FileNotFoundError(f"DuckDB database not found: {path}")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException:
        # Raised only when this process already has the file open read-write: DuckDB then
        # shares that instance with a same-config connection, so there is no lock to contend.
        logger.debug("%s is open read-write in this process; joining that instance", path)
        return duckdb.connect(str(path))


def _table_failures(
    connection: duckdb.DuckDBPyConnection, table: str, suite: gx.ExpectationSuite
) -> list[FailedExpectation]:
    """Compile what DuckDB can answer, hand the rest to GX pandas, keep suite order."""
    relation = _quoted_table(table)
    columns = _table_columns(connection, table)
    probes = [(i, _compile(e, relation, columns)) for i, e in enumerate(suite.expectations)]
    pushed = [(i, probe) for i, probe in probes if probe is not None]
    left_positions = [i for i, probe in probes if probe is None]
    leftover = [suite.expectations[i] for i in left_positions]

    failures = [(i, f) for i, f in _run_probes(connection, relation, pushed) if f is not None]
    if leftover:
        logger.info(
            "%s: %d expectation(s) run in pandas: %s",
            suite.name,
            len(leftover),
            ", ".join(e.expectation_type for e in leftover),
        )
        frame = _load_columns(connection, relation, _needed_columns(leftover, columns))
        for j, failure in _gx_pandas_failures(frame, leftover, suite.name):
            failures.append((left_positions[j], failure))
    return [f for _, f in sorted(failures, key=lambda pair: pair[0])]


def _quoted_table(table: str) -> str:
    """Quote `schema.table` so names are never interpolated raw into SQL."""
    parts = table.split(".")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"expected 'schema.table', got {table!r}")
    return ".".join(_quoted(part) for part in parts)


def _quoted(identifier: str) -> str:
    """Quote one SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _table_columns(connection: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """List the table's columns in order; a missing table is an error, not a failed check."""
    schema, name = table.split(".")
    rows = connection.sql(
        "select column_name from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        params=[schema, name],
    ).fetchall()
    if not rows:
        raise LookupError(f"table {table} does not exist")
    return [row[0] for row in rows]


def _load_columns(
    connection: duckdb.DuckDBPyConnection, relation: str, columns: Sequence[str]
) -> pd.DataFrame:
    """Fetch only the columns the leftover expectations read."""
    selected = ", ".join(_quoted(c) for c in columns) or "*"
    return connection.sql(f"select {selected} from {relation}").df()


def _needed_columns(expectations: Sequence[gxe.Expectation], columns: Sequence[str]) -> list[str]:
    """All columns if any expectation is about the whole table, else only the named ones."""
    named: set[str] = set()
    for expectation in expectations:
        kwargs = expectation.configuration.kwargs
        mentioned = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
        mentioned += list(kwargs.get("column_list") or [])
        mentioned = [m for m in mentioned if m is not None]
        if not mentioned:
            return list(columns)
        named.update(mentioned)
    return [c for c in columns if c in named]


# A probe answers one expectation from DuckDB. `count_sql` holds aggregate expressions for the shared scan
# (empty for row-count and schema probes); `grouped_sql` adds one group-by count (duplicates); `judge`
# turns (row_count, counts) into a FailedExpectation or None; `examples_sql` runs only after a failure.
@dataclass(frozen=True)
class _Probe:
    count_sql: tuple[str, ...]
    judge: Callable[[int, tuple[int, ...]], FailedExpectation | None]
    examples_sql: str | None = None
    grouped_sql: str | None = None


def _run_probes(
    connection: duckdb.DuckDBPyConnection, relation: str, probes: Sequence[tuple[int, _Probe]]
) -> list[tuple[int, FailedExpectation | None]]:
    """Answer every row-wise probe with one scan, and each duplicate probe with one group-by."""
    if not probes:
        return []
    expressions = ["count(*)"] + [sql for _, probe in probes for sql in probe.count_sql]
    (scanned,) = connection.sql(f"select {', '.join(expressions)} from {relation}").fetchall()
    row_count, counts = scanned[0], list(scanned[1:])
    results = []
    for index, probe in probes:
        own = tuple(int(c or 0) for c in counts[: len(probe.count_sql)])
        del counts[: len(probe.count_sql)]
        if probe.grouped_sql is not None:
            own += (int(connection.sql(probe.grouped_sql).fetchall()[0][0] or 0),)
        failure = probe.judge(row_count, own)
        if failure is not None and probe.examples_sql is not None:
            examples = tuple(_plain(row[0]) for row in connection.sql(probe.examples_sql).fetchall())
            failure = replace(failure, unexpected_examples=examples)
        results.append((index, failure))
    return results


def _mostly_holds(considered: int, unexpected: int, mostly: float) -> bool:
    """GX's rule: vacuously true on no rows, else the expected share must reach `mostly`."""
    return considered == 0 or (considered - unexpected) / considered >= mostly


def _literal(value: Any) -> str:
    """Render a Python scalar as a DuckDB literal (value sets and bounds come from suite code)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _is_plain(*values: Any) -> bool:
    """Suite parameters ({"$PARAMETER": ...}) and row conditions are left to GX itself."""
    return not any(isinstance(v, dict) for v in values)


def _compile(expectation: gxe.Expectation, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Translate an expectation into a DuckDB probe, or None when GX pandas should run it."""
    if getattr(expectation, "row_condition", None):
        return None
    compiler = _COMPILERS.get(expectation.expectation_type)
    return compiler(expectation, relation, columns) if compiler else None


def _missing_column(expectation: gxe.Expectation, column: str) -> _Probe:
    """Report a column the table lacks the way GX does: as a failed expectation."""
    failure = FailedExpectation(
        expectation_type=expectation.expectation_type,
        column=column,
        error=f"column {column!r} not found",
    )
    return _Probe(count_sql=(), judge=lambda _rows, _counts: failure)


Predicate = Callable[[str], str]


def _row_probe(
    expectation: gxe.Expectation,
    relation: str,
    columns: Sequence[str],
    considered: Predicate,
    unexpected: Predicate,
) -> _Probe:
    """Count considered and unexpected rows of one column in the shared scan."""
    column = expectation.column
    if column not in columns:
        return _missing_column(expectation, column)
    quoted = _quoted(column)
    considered_sql = considered(quoted)
    unexpected_sql = f"({considered_sql}) and ({unexpected(quoted)})"
    mostly = float(expectation.mostly)

    def judge(row_count: int, counts: tuple[int, ...]) -> FailedExpectation | None:
        considered_rows, unexpected_rows = counts
        if _mostly_holds(considered_rows, unexpected_rows, mostly):
            return None
        return FailedExpectation(
            expectation_type=expectation.expectation_type, column=column, unexpected_count=unexpected_rows
        )

    return _Probe(
        count_sql=(
            f"count(*) filter (where {considered_sql})",
            f"count(*) filter (where {unexpected_sql})",
        ),
        judge=judge,
        examples_sql=(
            f"select distinct {quoted} from {relation} where {unexpected_sql} "
            f"order by 1 limit {EXAMPLE_LIMIT}"
        ),
    )


def _not_null(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Every row counts; nulls are the unexpected ones."""
    if not _is_plain(expectation.mostly):
        return None
    return _row_probe(expectation, relation, columns, lambda c: "true", lambda c: f"{c} is null")


def _in_set(expectation: Any, relation: str, columns: Sequence[str], negate: bool = False) -> _Probe | None:
    """Non-null values outside (or, negated, inside) the value set are unexpected."""
    values = expectation.value_set
    if values is None or not _is_plain(values, expectation.mostly):
        return None
    listed = ", ".join(_literal(v) for v in values)

    def member(c: str) -> str:
        return f"{c} in ({listed})" if listed else "false"

    unexpected = member if negate else (lambda c: f"not ({member(c)})")
    return _row_probe(expectation, relation, columns, _not_null_sql, unexpected)


def _not_null_sql(column: str) -> str:
    """Value expectations ignore nulls, as GX does."""
    return f"{column} is not null"


def _not_in_set(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Non-null values inside the forbidden set are unexpected."""
    return _in_set(expectation, relation, columns, negate=True)


def _between(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Non-null values outside [min, max] (strict where asked) are unexpected."""
    low, high = expectation.min_value, expectation.max_value
    if not _is_plain(low, high, expectation.mostly, expectation.strict_min, expectation.strict_max):
        return None
    if (low is None and high is None) or not all(isinstance(v, int | float | None) for v in (low, high)):
        return None  # dates and open-ended ranges follow GX's own parsing rules
    low_op = ">" if expectation.strict_min else ">="
    high_op = "<" if expectation.strict_max else "<="

    def outside(c: str) -> str:
        bounds = [f"{c} {low_op} {_literal(low)}"] if low is not None else []
        bounds += [f"{c} {high_op} {_literal(high)}"] if high is not None else []
        return f"not ({' and '.join(bounds)})"

    return _row_probe(expectation, relation, columns, _not_null_sql, outside)


def _match_regex(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Non-null values with no match anywhere in the text are unexpected (GX uses re.search)."""
    if not _is_plain(expectation.regex, expectation.mostly):
        return None
    pattern = _literal(expectation.regex)
    return _row_probe(
        expectation,
        relation,
        columns,
        _not_null_sql,
        lambda c: f"not regexp_matches({c}::varchar, {pattern})",
    )


def _unique(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Every non-null row whose value occurs more than once is unexpected (GX counts all copies)."""
    return _duplicates_probe(expectation, relation, columns, [expectation.column], "all_values_are_missing")


def _compound_unique(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Rows whose combination of values repeats are unexpected, after GX's ignore_row_if filter."""
    return _duplicates_probe(
        expectation, relation, columns, list(expectation.column_list), expectation.ignore_row_if
    )


def _duplicates_probe(
    expectation: Any, relation: str, columns: Sequence[str], keys: list[str], ignore_row_if: str
) -> _Probe | None:
    """Count duplicate-group members with a group-by; nulls group together as pandas does."""
    if not _is_plain(expectation.mostly, ignore_row_if):
        return None
    missing = [k for k in keys if k not in columns]
    if missing:
        return _missing_column(expectation, missing[0])
    quoted = [_quoted(k) for k in keys]
    filters = {
        "all_values_are_missing": "not (" + " and ".join(f"{q} is null" for q in quoted) + ")",
        "any_value_is_missing": " and ".join(f"{q} is not null" for q in quoted),
        "never": "true",
    }
    if ignore_row_if not in filters:
        return None
    considered = filters[ignore_row_if]
    key_list = ", ".join(quoted)
    duplicated = (
        f"select {key_list}, count(*) as copies from {relation} where {considered} "
        f"group by all having count(*) > 1"
    )
    mostly = float(expectation.mostly)
    label = ", ".join(keys)
    pairs = ", ".join(f"{_literal(k)}: {q}" for k, q in zip(keys, quoted, strict=True))
    example = quoted[0] if len(keys) == 1 else "{" + pairs + "}"

    def judge(row_count: int, counts: tuple[int, ...]) -> FailedExpectation | None:
        considered_rows, unexpected_rows = counts
        if _mostly_holds(considered_rows, unexpected_rows, mostly):
            return None
        return FailedExpectation(
            expectation_type=expectation.expectation_type, column=label, unexpected_count=unexpected_rows
        )

    return _Probe(
        count_sql=(f"count(*) filter (where {considered})",),
        judge=judge,
        grouped_sql=f"select sum(copies) from ({duplicated})",
        examples_sql=f"select {example} from ({duplicated}) order by copies desc limit {EXAMPLE_LIMIT}",
    )


def _row_count_between(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """The scan's row count against the bounds."""
    low, high = expectation.min_value, expectation.max_value
    if not _is_plain(low, high, expectation.strict_min, expectation.strict_max):
        return None

    def judge(row_count: int, _counts: tuple[int, ...]) -> FailedExpectation | None:
        above = low is None or (row_count > low if expectation.strict_min else row_count >= low)
        below = high is None or (row_count < high if expectation.strict_max else row_count <= high)
        if above and below:
            return None
        return FailedExpectation(
            expectation_type=expectation.expectation_type, column=None, observed_value=row_count
        )

    return _Probe(count_sql=(), judge=judge)


def _column_exists(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Answered from the catalogue; a position check is left to GX."""
    if getattr(expectation, "column_index", None) is not None:
        return None
    present = expectation.column in columns
    failure = FailedExpectation(
        expectation_type=expectation.expectation_type, column=expectation.column, observed_value=list(columns)
    )
    return _Probe(count_sql=(), judge=lambda _rows, _counts: None if present else failure)


def _columns_match_set(expectation: Any, relation: str, columns: Sequence[str]) -> _Probe | None:
    """Exact set equality, or only presence of the listed columns when exact_match is False."""
    wanted = expectation.column_set
    if not _is_plain(wanted, expectation.exact_match) or wanted is None:
        return None
    present = set(columns)
    mismatched = set(wanted) ^ present if expectation.exact_match else set(wanted) - present
    holds = not mismatched
    failure = FailedExpectation(
        expectation_type=expectation.expectation_type,
        column=None,
        observed_value=list(columns),
        unexpected_examples=tuple(sorted(mismatched)),
    )
    return _Probe(count_sql=(), judge=lambda _rows, _counts: None if holds else failure)


_COMPILERS: dict[str, Callable[[Any, str, Sequence[str]], _Probe | None]] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_not_be_in_set": _not_in_set,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_match_regex": _match_regex,
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_table_row_count_to_be_between": _row_count_between,
    "expect_column_to_exist": _column_exists,
    "expect_table_columns_to_match_set": _columns_match_set,
}

PUSHED_DOWN_EXPECTATION_TYPES = frozenset(_COMPILERS)
