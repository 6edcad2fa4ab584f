"""Scan published warehouse tables for raw personal data that should never have reached them.

Every string-typed column (VARCHAR, JSON, ENUM, and nested types such as VARCHAR[] or structs that hold
strings, which are scanned as their text form) is checked for mainland-China mobile numbers, 18-digit
resident ID-card numbers with a valid ISO 7064 MOD 11-2 check character, and e-mail addresses. All
matching runs inside DuckDB as one aggregate scan per table, so a 10M-row table never reaches pandas,
and examples are masked inside DuckDB so neither Python memory nor the report ever holds a raw value.

A phone or ID number counts only as a whole token: it must not sit inside a longer run of digits or hex
letters (the HMAC phone hashes of `orchestration.pii` are 64 hex characters), nor be the integer part of
a decimal amount. A number glued to hex letters (`abc13800138000`) is therefore not reported.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import duckdb
import pandas as pd

PUBLISHED_SCHEMAS = ("marts", "quarantine")
FINDING_COLUMNS = ["schema", "table", "column", "kind", "matches", "examples"]

_HEX = "0-9A-Fa-f"
# Boundaries cannot use look-around (RE2), so they consume one character, or a '.' that is not part of
# a decimal number, on each side; the match itself is capture group 1.
_BEFORE_NUMBER = rf"(?:^|[^{_HEX}.]|[^0-9]\.|^\.)"
_AFTER_NUMBER = rf"(?:$|[^{_HEX}.]|\.$|\.[^0-9])"
_MOBILE = r"(?:(?:\+|00)86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
PHONE_PATTERN = f"{_BEFORE_NUMBER}({_MOBILE}){_AFTER_NUMBER}"

ID_CARD_SHAPE = r"[1-9][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"
_ID_TOKEN = f"[{_HEX}Xx]+"
ID_CARD_PATTERN = f"(?:^|[^{_HEX}Xx])({ID_CARD_SHAPE})(?:$|[^{_HEX}Xx])"
# ISO 7064 MOD 11-2 as used by GB 11643: weight of position i (1-based) is 2^(18-i) mod 11.
ID_CARD_WEIGHTS = tuple(pow(2, 17 - position, 11) for position in range(17))
ID_CARD_CHECK_CHARACTERS = "10X98765432"

EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"


@dataclass(frozen=True)
class PiiFinding:
    """One column holding one kind of personal data, in words a reviewer or check metadata can use."""

    schema: str
    table: str
    column: str
    kind: str
    matches: int
    examples: tuple[str, ...]

    def __str__(self) -> str:
        shown = ", ".join(self.examples)
        return (
            f"{self.schema}.{self.table}.{self.column}: {self.matches} value(s) with a {self.kind} ({shown})"
        )


def quote_identifier(name: str) -> str:
    """Double-quote a catalog name so any table or column name is read as a name, never as SQL."""
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    """Single-quote one of this module's own constants (patterns, masks) as a SQL literal."""
    return "'" + text.replace("'", "''") + "'"


def _id_card_checksum_holds(token: str) -> str:
    """SQL that is true when an 18-character ID token's last character matches its MOD 11-2 checksum."""
    weighted = " + ".join(
        f"(ascii(substr({token}, {position + 1}, 1)) - 48) * {weight}"
        for position, weight in enumerate(ID_CARD_WEIGHTS)
    )
    expected_check = f"substr({_sql_string(ID_CARD_CHECK_CHARACTERS)}, ({weighted}) % 11 + 1, 1)"
    return f"{expected_check} = upper(substr({token}, 18, 1))"


def _phone_match(text: str) -> str:
    """SQL giving the first phone number in `text`, or NULL."""
    return f"nullif(regexp_extract({text}, {_sql_string(PHONE_PATTERN)}, 1), '')"


def _id_card_match(text: str) -> str:
    """SQL giving the first ID-card number in `text` whose checksum holds, or NULL.

    Every hex-and-X token is checked, not only the first ID-shaped one, so an invalid number cannot hide
    a valid one later in the same value; the cheap shape test runs first so tokenising is rare.
    """
    valid_token = (
        f"regexp_full_match(token, {_sql_string(ID_CARD_SHAPE)}) AND {_id_card_checksum_holds('token')}"
    )
    tokens = f"regexp_extract_all({text}, {_sql_string(_ID_TOKEN)})"
    return (
        f"CASE WHEN regexp_matches({text}, {_sql_string(ID_CARD_PATTERN)}) THEN "
        f"list_filter({tokens}, lambda token: {valid_token})[1] END"
    )


def _email_match(text: str) -> str:
    """SQL giving the first e-mail address in `text`, or NULL; the '@' test skips the regex on most values."""
    first_email = f"nullif(regexp_extract({text}, {_sql_string(EMAIL_PATTERN)}), '')"
    return f"CASE WHEN contains({text}, '@') THEN {first_email} END"


def _masked_phone(match: str) -> str:
    """SQL masking a matched phone to the usual 138****8000 form (country prefix and separators dropped)."""
    return f"left(right(regexp_replace({match}, '[^0-9]', '', 'g'), 11), 3) || '****' || right({match}, 4)"


def _masked_id_card(match: str) -> str:
    """SQL masking an ID number so the birth date and most of the region code are hidden."""
    return f"left({match}, 3) || repeat('*', 11) || upper(right({match}, 4))"


def _masked_email(match: str) -> str:
    """SQL masking the mailbox name of an e-mail address but keeping its domain."""
    return f"left({match}, 1) || '***@' || split_part({match}, '@', 2)"


# Every phone contains the core 1[3-9]x xxxx xxxx and every ID number a run of 17 digits; e-mails are
# prefiltered by their own cheaper '@' test.
DIGIT_RUN_PREFILTER = r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}|[0-9]{17}"
PREFILTER_FREE_KINDS = frozenset({"email"})

PII_KINDS = {
    "phone": (_phone_match, _masked_phone),
    "id_card": (_id_card_match, _masked_id_card),
    "email": (_email_match, _masked_email),
}


def is_string_typed(data_type: str) -> bool:
    """True for column types whose values can carry free text: strings, JSON, enums, and nests of them."""
    upper = data_type.upper()
    return "VARCHAR" in upper or "JSON" in upper or upper.startswith("ENUM(")


def _column_as_text(column: str, data_type: str) -> str:
    """SQL giving a column's values as text; nested values are scanned through their printed form."""
    quoted = quote_identifier(column)
    return quoted if data_type.upper() == "VARCHAR" else f"CAST({quoted} AS VARCHAR)"


def string_columns(conn: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> pd.DataFrame:
    """The string-typed columns of every table and view in `schemas` of the connection's current database."""
    catalog = conn.execute(
        """
        SELECT table_schema AS schema, table_name AS "table", column_name AS "column", data_type
        FROM information_schema.columns
        WHERE table_catalog = current_database() AND list_contains(?, table_schema)
        ORDER BY table_schema, table_name, ordinal_position
        """,
        [list(schemas)],
    ).df()
    is_text = [is_string_typed(data_type) for data_type in catalog["data_type"]]
    return catalog.loc[is_text].reset_index(drop=True)


def table_scan_sql(schema: str, table: str, columns: pd.DataFrame, sample_limit: int) -> str:
    """One aggregate query counting, per column and kind, the values that hold PII, with masked examples.

    The innermost level runs one cheap regex per column that every phone and ID number must match, so
    the exact patterns (boundaries, tokenising, checksum) run only on the few values that pass it; this
    roughly halves the time of a scan over hash and JSON columns.
    """
    prefiltered, matches, aggregates = [], [], []
    column_types = zip(columns["column"], columns["data_type"], strict=True)
    for column_number, (column, data_type) in enumerate(column_types):
        text, has_digits = f"c{column_number}_text", f"c{column_number}_has_digit_run"
        column_text = _column_as_text(column, data_type)
        prefiltered.append(
            f"{column_text} AS {text}, "
            f"regexp_matches({column_text}, {_sql_string(DIGIT_RUN_PREFILTER)}) AS {has_digits}"
        )
        for kind, (match_sql, mask_sql) in PII_KINDS.items():
            alias = f"c{column_number}_{kind}"
            match = match_sql(text)
            if kind not in PREFILTER_FREE_KINDS:
                match = f"CASE WHEN {has_digits} THEN {match} END"
            matches.append(f"{match} AS {alias}")
            masked = f"list_transform(min({alias}, {sample_limit}), lambda m: {mask_sql('m')})"
            examples = f"list_sort(list_distinct({masked}))" if sample_limit > 0 else "CAST([] AS VARCHAR[])"
            aggregates.append(f"count({alias}) AS {alias}_matches, {examples} AS {alias}_examples")
    source = f"{quote_identifier(schema)}.{quote_identifier(table)}"
    return (
        f"SELECT {', '.join(aggregates)} FROM (SELECT {', '.join(matches)} "
        f"FROM (SELECT {', '.join(prefiltered)} FROM {source}))"
    )


def scan_table(
    conn: duckdb.DuckDBPyConnection, schema: str, table: str, columns: pd.DataFrame, sample_limit: int
) -> pd.DataFrame:
    """Findings for one table from a single pass over it; column/kind pairs without matches are left out."""
    row = conn.execute(table_scan_sql(schema, table, columns, sample_limit)).fetchone()
    findings = []
    for column_number, column in enumerate(columns["column"]):
        for kind_number, kind in enumerate(PII_KINDS):
            position = 2 * (column_number * len(PII_KINDS) + kind_number)
            matches, examples = row[position], row[position + 1]
            if matches:
                findings.append([schema, table, column, kind, int(matches), list(examples or [])])
    return pd.DataFrame(findings, columns=FINDING_COLUMNS)


def scan_for_pii(
    conn: duckdb.DuckDBPyConnection,
    schemas: tuple[str, ...] = PUBLISHED_SCHEMAS,
    sample_limit: int = 5,
) -> pd.DataFrame:
    """Where raw phones, ID numbers or e-mails sit in published tables: one row per column and kind found.

    `matches` counts values (rows) holding at least one match of that kind; `examples` are up to
    `sample_limit` distinct masked matches, smallest first, so the report itself leaks nothing.
    """
    sample_limit = operator.index(sample_limit)  # it is written into the SQL, so it must be a true integer
    if sample_limit < 0:
        raise ValueError(f"sample_limit must be >= 0, got {sample_limit}")
    columns = string_columns(conn, schemas)
    per_table = [
        scan_table(conn, schema, table, table_columns, sample_limit)
        for (schema, table), table_columns in columns.groupby(["schema", "table"], sort=True)
    ]
    found = [frame for frame in per_table if not frame.empty]
    if not found:
        return empty_findings()
    return pd.concat(found, ignore_index=True)


def empty_findings() -> pd.DataFrame:
    """A findings frame with no rows but the published columns and dtypes, so callers never special-case."""
    return pd.DataFrame(
        {name: pd.Series(dtype="int64" if name == "matches" else object) for name in FINDING_COLUMNS}
    )


def pii_findings(frame: pd.DataFrame) -> tuple[PiiFinding, ...]:
    """The findings frame as plain records, for check metadata and log lines."""
    return tuple(
        PiiFinding(row.schema, row.table, row.column, row.kind, int(row.matches), tuple(row.examples))
        for row in frame.itertuples(index=False)
    )
