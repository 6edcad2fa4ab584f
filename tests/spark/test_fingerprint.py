"""The normalisation that lets DuckDB's and Spark's copies of a table be compared."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from tests.spark.fingerprint import column_kind, compare_tables, normalise_value


def test_column_kind_takes_the_coarsest_type():
    assert column_kind(pa.int64(), pa.int32()) == "integer"
    assert column_kind(pa.int64(), pa.float64()) == "float"
    assert column_kind(pa.float64(), pa.decimal128(38, 6)) == "decimal"
    assert column_kind(pa.string(), pa.string()) == "other"


def test_values_normalise_to_fixed_places_and_utc_text():
    assert normalise_value(1.23456789, "float") == "1.234568"
    assert normalise_value(3, "float") == "3.000000"
    assert normalise_value(-0.0, "float") == "0.000000"
    assert normalise_value(Decimal("12.345678"), "decimal") == "12.35"
    assert normalise_value(12.3456, "decimal") == "12.35"
    assert normalise_value(float("nan"), "float") is None
    assert normalise_value(datetime(2026, 1, 1, 8, 30, tzinfo=UTC), "other") == "2026-01-01T08:30:00"
    assert normalise_value(datetime(2026, 1, 1, 8, 30), "other") == "2026-01-01T08:30:00"
    assert normalise_value(date(2026, 1, 1), "other") == "2026-01-01"
    assert normalise_value(["a", "b"], "other") == ("a", "b")
    assert normalise_value(True, "integer") is True


def test_float_noise_on_a_rounding_half_does_not_split_the_engines():
    # 1.0000005 summed in two orders: the raw bits fall either side of the 7th-decimal half.
    assert normalise_value(1.0000004999999999, "float") == normalise_value(1.0000005000000001, "float")
    assert normalise_value(1.0000004999999999, "float") == "1.000000"
    assert normalise_value(-1e-9, "float") == "0.000000"


def test_engines_types_differ_but_rows_match():
    duckdb_like = pa.table(
        {
            "user_key": ["u1", "u2"],
            "frequency": pa.array([2, 1], pa.int64()),
            "monetary": pa.array([Decimal("10.50"), Decimal("3.00")], pa.decimal128(38, 2)),
            "seen_at": pa.array([datetime(2026, 1, 1, 0, 0), None], pa.timestamp("us")),
            "share": [0.1 + 0.2, 1.0],
        }
    )
    spark_like = pa.table(
        {
            "user_key": ["u2", "u1"],
            "frequency": pa.array([1, 2], pa.int32()),
            "monetary": pa.array([Decimal("3.00"), Decimal("10.50")], pa.decimal128(28, 2)),
            "seen_at": pa.array([None, datetime(2026, 1, 1, 0, 0, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
            "share": [1.0, 0.3],
        }
    )
    assert compare_tables(duckdb_like, spark_like) == []


def test_differences_name_the_column_or_the_row_count():
    left = pa.table({"user_key": ["u1", "u2"], "frequency": [2, 1]})
    assert compare_tables(left, pa.table({"user_key": ["u1", "u2"], "frequency": [2, 2]})) == [
        "column frequency differs"
    ]
    assert compare_tables(left, pa.table({"user_key": ["u1"], "frequency": [2]})) == ["rows 2 vs 1"]
    swapped = pa.table({"user_key": ["u1", "u2"], "frequency": [1, 2]})
    assert compare_tables(left, swapped) == [
        "rows differ although every column matches (values paired differently)"
    ]
    assert compare_tables(left, pa.table({"user_key": ["u1", "u2"]})) == [
        "columns only left ['frequency'], only right []"
    ]


@given(st.lists(st.tuples(st.text(max_size=5), st.integers(-1000, 1000)), max_size=20), st.randoms())
def test_row_order_never_matters(rows, random):
    shuffled = list(rows)
    random.shuffle(shuffled)
    assert compare_tables(key_value_table(rows), key_value_table(shuffled)) == []


def key_value_table(rows: list[tuple[str, int]]) -> pa.Table:
    return pa.table(
        {
            "key": pa.array([key for key, _ in rows], pa.string()),
            "value": pa.array([value for _, value in rows], pa.int64()),
        }
    )
