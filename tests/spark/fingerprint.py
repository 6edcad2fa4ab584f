"""Order-independent fingerprints of a table's rows, with values normalised so two engines can be compared.

The two engines legitimately differ in physical types (BIGINT vs INT, DECIMAL(38,2) vs DECIMAL(28,2), a
double vs a decimal for the same ratio, naive vs zoned timestamps) and in float summation order, so each
column is normalised to one kind chosen from both engines' types before hashing.

Floats are first cut to 12 significant digits, then rounded to 6 places: the engines' sums differ in the
last bits, and an average of millisecond durations can sit exactly on a 7th-decimal half (x.xxxxxx5), where
rounding the raw bits alone would go up on one engine and down on the other.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pyarrow as pa

FLOAT_PLACES = 6
DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 12


def column_kind(*types: pa.DataType) -> str:
    """The coarsest kind among the engines' types: decimal beats float beats integer."""
    if any(pa.types.is_decimal(t) for t in types):
        return "decimal"
    if any(pa.types.is_floating(t) for t in types):
        return "float"
    if all(pa.types.is_integer(t) for t in types):
        return "integer"
    return "other"


def rounded(value, places: int) -> str:
    """A number rounded half-even to `places`, floats first stripped of representation noise."""
    exact = Decimal(f"{value:.{SIGNIFICANT_DIGITS}g}") if isinstance(value, float) else Decimal(value)
    return str(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN) + 0)


def normalise_value(value, kind: str):
    """One value as comparable text or scalar: floats to 6 places, decimals to 2, timestamps ISO in UTC."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind == "decimal" and not isinstance(value, bool):
        return rounded(value, DECIMAL_PLACES)
    if kind == "float" and not isinstance(value, bool):
        return rounded(float(value), FLOAT_PLACES)
    if isinstance(value, datetime):
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return utc.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return rounded(value, DECIMAL_PLACES)
    if isinstance(value, float):
        return rounded(value, FLOAT_PLACES)
    if isinstance(value, list | tuple):
        return tuple(normalise_value(item, "other") for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, normalise_value(item, "other")) for key, item in value.items()))
    return value


def digest(items: list) -> str:
    """sha256 of a multiset: sorting the reprs first makes row order irrelevant."""
    hasher = hashlib.sha256()
    for text in sorted(repr(item) for item in items):
        hasher.update(text.encode())
        hasher.update(b"\n")
    return hasher.hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    checksum: str
    column_checksums: dict[str, str]


def fingerprint(table: pa.Table, kinds: dict[str, str]) -> Fingerprint:
    """Row count, a checksum of all rows and one per column (to name the columns that differ)."""
    columns = {
        name: [normalise_value(value, kind) for value in table.column(name).to_pylist()]
        for name, kind in kinds.items()
    }
    rows = list(zip(*columns.values(), strict=True)) if columns else []
    return Fingerprint(
        rows=table.num_rows,
        checksum=digest(rows),
        column_checksums={name: digest(values) for name, values in columns.items()},
    )


def compare_tables(left: pa.Table, right: pa.Table) -> list[str]:
    """What differs between two engines' copies of one table; empty when they hold the same rows."""
    left_columns, right_columns = set(left.column_names), set(right.column_names)
    if left_columns != right_columns:
        return [
            f"columns only left {sorted(left_columns - right_columns)}, only right "
            f"{sorted(right_columns - left_columns)}"
        ]
    kinds = {
        name: column_kind(left.schema.field(name).type, right.schema.field(name).type)
        for name in left.column_names
    }
    left_print, right_print = fingerprint(left, kinds), fingerprint(right, kinds)
    if left_print.rows != right_print.rows:
        return [f"rows {left_print.rows} vs {right_print.rows}"]
    if left_print.checksum == right_print.checksum:
        return []
    return [
        f"column {name} differs"
        for name in left.column_names
        if left_print.column_checksums[name] != right_print.column_checksums[name]
    ] or ["rows differ although every column matches (values paired differently)"]
