"""GX suites on DuckDB tables: verdicts on hand-made tables, parity with GX pandas, Dagster checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expectations.checks import check_result, failures_markdown, gx_asset_check
from expectations.validate import (
    PUSHED_DOWN_EXPECTATION_TYPES,
    FailedExpectation,
    ValidationSummary,
    validate_frame,
    validate_table,
)

USERS = pd.DataFrame(
    {
        "user_key": ["u1", "u2", "u3", "u4", "u5"],
        "gender": ["M", "F", "U", "F", "M"],
        "age": [21, 35, 47, 60, 18],
        "province": ["广东", "浙江", None, "上海", "北京"],
    }
)

dim_users_suite = gx.ExpectationSuite(
    name="dim_users",
    expectations=[
        gxe.ExpectTableColumnsToMatchSet(column_set=["user_key", "gender", "age"], exact_match=False),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="user_key"),
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F", "U"]),
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120),
        gxe.ExpectColumnValuesToNotBeNull(column="province", mostly=0.8),
        gxe.ExpectColumnValuesToMatchRegex(column="user_key", regex=r"^u\d+$"),
    ],
)


def _write_table(path: Path, table: str, frame: pd.DataFrame) -> None:
    """Create schema.table in a DuckDB file from a frame."""
    schema = table.split(".")[0]
    with duckdb.connect(str(path)) as connection:
        connection.sql(f"create schema if not exists {schema}")
        connection.sql(f"create or replace table {table} as select * from frame")


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    _write_table(path, "marts.dim_users", USERS)
    duplicated = pd.concat([USERS, USERS.iloc[[1]]], ignore_index=True)
    _write_table(path, "marts.dim_users_duplicated", duplicated)
    return path


def _suite(*expectations: gxe.Expectation) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name="probe", expectations=list(expectations))


def test_passing_suite_passes(warehouse: Path) -> None:
    summary = validate_table(warehouse, "marts.dim_users", dim_users_suite)

    assert summary.success
    assert summary.suite_name == "dim_users"
    assert summary.evaluated_count == 8
    assert summary.failed == ()
    assert summary.elapsed_seconds > 0


VIOLATIONS = [
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnValuesToNotBeNull(column="province"),
        FailedExpectation("expect_column_values_to_not_be_null", "province", None, 1, (None,)),
        id="null",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=18, max_value=50),
        FailedExpectation("expect_column_values_to_be_between", "age", None, 1, (60,)),
        id="out-of-range",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=18, max_value=60, strict_min=True),
        FailedExpectation("expect_column_values_to_be_between", "age", None, 1, (18,)),
        id="strict-bound",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F"]),
        FailedExpectation("expect_column_values_to_be_in_set", "gender", None, 1, ("U",)),
        id="unexpected-value",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnValuesToNotBeInSet(column="gender", value_set=["F"]),
        FailedExpectation("expect_column_values_to_not_be_in_set", "gender", None, 2, ("F",)),
        id="forbidden-value",
    ),
    pytest.param(
        "marts.dim_users_duplicated",
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        # GX counts every copy of a repeated key, not only the extra ones.
        FailedExpectation("expect_column_values_to_be_unique", "user_key", None, 2, ("u2",)),
        id="duplicate-key",
    ),
    pytest.param(
        "marts.dim_users_duplicated",
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_key", "gender"]),
        FailedExpectation(
            "expect_compound_columns_to_be_unique",
            "user_key, gender",
            None,
            2,
            ({"user_key": "u2", "gender": "F"},),
        ),
        id="duplicate-compound-key",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnValuesToMatchRegex(column="user_key", regex=r"[1-3]$"),
        FailedExpectation("expect_column_values_to_match_regex", "user_key", None, 2, ("u4", "u5")),
        id="regex",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectTableRowCountToBeBetween(min_value=10),
        FailedExpectation("expect_table_row_count_to_be_between", None, 5),
        id="row-count",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectTableColumnsToMatchSet(column_set=["user_key", "gender", "age", "city"], exact_match=False),
        FailedExpectation(
            "expect_table_columns_to_match_set",
            None,
            ["user_key", "gender", "age", "province"],
            unexpected_examples=("city",),
        ),
        id="missing-contract-column",
    ),
    pytest.param(
        "marts.dim_users",
        gxe.ExpectColumnToExist(column="city"),
        FailedExpectation(
            "expect_column_to_exist", "city", ["user_key", "gender", "age", "province"], None, ()
        ),
        id="column-to-exist",
    ),
]


@pytest.mark.parametrize(("table", "expectation", "expected"), VIOLATIONS)
def test_violated_expectation_is_listed(
    warehouse: Path, table: str, expectation: gxe.Expectation, expected: FailedExpectation
) -> None:
    summary = validate_table(
        warehouse, table, _suite(gxe.ExpectColumnValuesToNotBeNull(column="age"), expectation)
    )

    assert not summary.success
    assert summary.evaluated_count == 2
    assert summary.failed == (expected,)


@pytest.mark.parametrize(("table", "expectation", "expected"), VIOLATIONS)
def test_gx_pandas_engine_agrees_on_the_violation(
    warehouse: Path, table: str, expectation: gxe.Expectation, expected: FailedExpectation
) -> None:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        frame = connection.sql(f"select * from {table}").df()

    (failure,) = validate_frame(frame, _suite(expectation)).failed

    assert (failure.expectation_type, failure.column, failure.unexpected_count) == (
        expected.expectation_type,
        expected.column,
        expected.unexpected_count,
    )


PARTLY_MISSING_PAIRS = pd.DataFrame(
    {
        "n": pd.array([1, 1, None, None, 2], dtype="Int64"),
        "w": pd.array([None, None, None, None, "a"], dtype="string"),
    }
)


@pytest.mark.parametrize(
    ("ignore_row_if", "unexpected_count"),
    [("all_values_are_missing", 2), ("any_value_is_missing", None), ("never", 4)],
)
def test_compound_uniqueness_follows_ignore_row_if_in_both_engines(
    ignore_row_if: str, unexpected_count: int | None
) -> None:
    suite = _suite(gxe.ExpectCompoundColumnsToBeUnique(column_list=["n", "w"], ignore_row_if=ignore_row_if))
    with duckdb.connect() as connection:
        connection.register("pairs", PARTLY_MISSING_PAIRS)
        connection.sql("create schema s")
        connection.sql("create table s.pairs as select * from pairs")
        in_duckdb = validate_table(connection, "s.pairs", suite)
    in_pandas = validate_frame(PARTLY_MISSING_PAIRS, suite)

    for summary in (in_duckdb, in_pandas):
        assert [f.unexpected_count for f in summary.failed] == (
            [unexpected_count] if unexpected_count else []
        )


def test_mostly_tolerates_a_share_of_nulls(warehouse: Path) -> None:
    tolerant = _suite(gxe.ExpectColumnValuesToNotBeNull(column="province", mostly=0.8))
    strict = _suite(gxe.ExpectColumnValuesToNotBeNull(column="province", mostly=0.81))

    assert validate_table(warehouse, "marts.dim_users", tolerant).success
    assert not validate_table(warehouse, "marts.dim_users", strict).success


def test_expectations_duckdb_cannot_answer_run_in_gx_and_keep_suite_order(warehouse: Path) -> None:
    length = gxe.ExpectColumnValueLengthsToEqual(column="user_key", value=3)
    assert length.expectation_type not in PUSHED_DOWN_EXPECTATION_TYPES
    suite = _suite(
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M"]),
        length,
        gxe.ExpectColumnValuesToBeBetween(column="age", max_value=20),
    )

    summary = validate_table(warehouse, "marts.dim_users", suite)

    assert [(f.expectation_type, f.unexpected_count) for f in summary.failed] == [
        ("expect_column_values_to_be_in_set", 3),
        ("expect_column_value_lengths_to_equal", 5),
        ("expect_column_values_to_be_between", 4),
    ]
    assert set(summary.failed[1].unexpected_examples) <= {"u1", "u2", "u3", "u4", "u5"}


def test_missing_column_is_a_failure_and_missing_table_an_error(warehouse: Path) -> None:
    summary = validate_table(
        warehouse, "marts.dim_users", _suite(gxe.ExpectColumnValuesToNotBeNull(column="city"))
    )

    assert summary.failed == (
        FailedExpectation("expect_column_values_to_not_be_null", "city", error="column 'city' not found"),
    )
    with pytest.raises(LookupError, match="marts.nowhere"):
        validate_table(warehouse, "marts.nowhere", dim_users_suite)
    with pytest.raises(ValueError, match="schema.table"):
        validate_table(warehouse, "dim_users", dim_users_suite)


def test_accepts_an_open_connection_and_a_writer_in_the_same_process(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as writer:
        assert validate_table(writer, "marts.dim_users", dim_users_suite).success
        assert validate_table(warehouse, "marts.dim_users", dim_users_suite).success


def test_writer_in_another_process_makes_validation_fail_fast(warehouse: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import duckdb, sys
        connection = duckdb.connect({str(warehouse)!r})
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(duckdb.IOException, match="lock"):
            validate_table(warehouse, "marts.dim_users", dim_users_suite)
    finally:
        process.communicate(input="", timeout=30)


# Parity: on random small tables, the DuckDB translation and GX's pandas engine give the same verdicts.
cells = st.one_of(st.none(), st.integers(min_value=-3, max_value=3))
words = st.one_of(st.none(), st.sampled_from(["a", "b", "ab", "ba", "c"]))
mostly = st.sampled_from([0.5, 0.75, 1.0])
random_expectations = st.lists(
    st.one_of(
        st.builds(gxe.ExpectColumnValuesToNotBeNull, column=st.sampled_from(["n", "w"]), mostly=mostly),
        st.builds(gxe.ExpectColumnValuesToBeUnique, column=st.sampled_from(["n", "w"]), mostly=mostly),
        st.builds(
            gxe.ExpectColumnValuesToBeInSet,
            column=st.just("w"),
            value_set=st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
            mostly=mostly,
        ),
        st.builds(
            gxe.ExpectColumnValuesToBeBetween,
            column=st.just("n"),
            min_value=st.integers(-3, 0),
            max_value=st.integers(0, 3),
            strict_min=st.booleans(),
            strict_max=st.booleans(),
            mostly=mostly,
        ),
        st.builds(
            gxe.ExpectColumnValuesToMatchRegex, column=st.just("w"), regex=st.sampled_from(["^a", "b$", "a"])
        ),
        st.builds(
            gxe.ExpectCompoundColumnsToBeUnique,
            column_list=st.just(["n", "w"]),
            ignore_row_if=st.sampled_from(["all_values_are_missing", "any_value_is_missing", "never"]),
        ),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(cells, words), max_size=12), expectations=random_expectations)
def test_duckdb_translation_agrees_with_gx_pandas(rows: list[tuple], expectations: list) -> None:
    source = pd.DataFrame(rows, columns=["n", "w"]).astype({"n": "Int64", "w": "string"})
    with duckdb.connect() as connection:
        connection.register("source", source)
        connection.sql("create schema s")
        connection.sql("create table s.t as select * from source")
        frame = connection.sql("select * from s.t").df()
        suite = gx.ExpectationSuite(name="parity", expectations=expectations)

        in_duckdb = validate_table(connection, "s.t", suite)
    in_pandas = validate_frame(frame, suite)

    def verdict(summary: ValidationSummary) -> list[tuple]:
        return [(f.expectation_type, f.column, f.unexpected_count) for f in summary.failed]

    assert in_duckdb.success == in_pandas.success
    assert verdict(in_duckdb) == verdict(in_pandas)


# Dagster: the factory's check as Dagster sees it, executed with the asset that writes the table.
def _users_asset(path: Path, frame: pd.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(key=["marts", "dim_users"])
    def dim_users() -> None:
        _write_table(path, "marts.dim_users", frame)

    return dim_users


def test_factory_names_the_check_and_sets_blocking(tmp_path: Path) -> None:
    blocking = gx_asset_check(
        dim_users_suite, ["marts", "dim_users"], "marts.dim_users", True, lambda: tmp_path
    )
    warning = gx_asset_check(dim_users_suite, "dim_users", "marts.dim_users", False, lambda: tmp_path)

    (blocking_spec,) = blocking.check_specs
    (warning_spec,) = warning.check_specs
    assert blocking_spec.name == "gx_dim_users"
    assert blocking_spec.asset_key == dg.AssetKey(["marts", "dim_users"])
    assert blocking_spec.blocking is True
    assert warning_spec.blocking is False


@pytest.mark.parametrize(
    ("frame", "blocking", "passed", "severity", "failed_count"),
    [
        pytest.param(USERS, True, True, dg.AssetCheckSeverity.ERROR, 0, id="passing"),
        pytest.param(
            USERS.assign(gender=["M", "F", "X", "F", "M"], age=[21, 35, 47, 60, 180]),
            True,
            False,
            dg.AssetCheckSeverity.ERROR,
            2,
            id="failing-blocking",
        ),
        pytest.param(
            USERS.assign(age=[21, 35, 47, 60, -1]), False, False, dg.AssetCheckSeverity.WARN, 1, id="warn"
        ),
    ],
)
def test_check_runs_after_materialization(
    tmp_path: Path,
    frame: pd.DataFrame,
    blocking: bool,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    failed_count: int,
) -> None:
    path = tmp_path / "warehouse.duckdb"
    asset = _users_asset(path, frame)
    check = gx_asset_check(dim_users_suite, asset.key, "marts.dim_users", blocking, lambda: path)

    result = dg.materialize([asset, check], raise_on_error=False)

    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "gx_dim_users"
    assert evaluation.passed is passed
    assert evaluation.severity == severity
    assert evaluation.metadata["evaluated_expectations"].value == 8
    assert evaluation.metadata["failed_expectations"].value == failed_count
    assert evaluation.metadata["elapsed_seconds"].value > 0
    table = evaluation.metadata["failures"].value
    assert table.count("\n| expect_") == failed_count


def test_check_result_and_failure_table_for_a_hand_made_summary() -> None:
    summary = ValidationSummary(
        suite_name="orders",
        success=False,
        evaluated_count=3,
        failed=(
            FailedExpectation("expect_column_values_to_be_in_set", "status", None, 2, ("paid|ish", "lost")),
            FailedExpectation("expect_column_values_to_not_be_null", "city", error="column 'city' not found"),
        ),
        elapsed_seconds=0.25,
    )

    result = check_result(summary, blocking=False)

    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["evaluated_expectations"].value == 3
    assert result.metadata["failed_expectations"].value == 2
    assert result.metadata["elapsed_seconds"].value == 0.25
    assert result.metadata["failures"].value == (
        "| expectation | column | observed | unexpected rows | examples |\n"
        "|---|---|---|---|---|\n"
        "| expect_column_values_to_be_in_set | status |  | 2 | paid\\|ish, lost |\n"
        "| expect_column_values_to_not_be_null | city | column 'city' not found |  |  |"
    )
    assert failures_markdown(()) == "All expectations passed."
