"""PII scanner: planted phones, ID numbers and e-mails are found with exact counts; look-alikes are not."""

from __future__ import annotations

import re
import time
import uuid
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expectations.pii_scan import (
    FINDING_COLUMNS,
    PiiFinding,
    pii_findings,
    quote_identifier,
    scan_for_pii,
)
from orchestration.pii import hash_phone

# GB 11643 weights, written out here rather than derived, so the test does not share the module's arithmetic.
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def id_card_number(body: str) -> str:
    """A valid 18-character ID number: the 17-digit body plus its ISO 7064 MOD 11-2 check character."""
    remainder = sum(int(digit) * weight for digit, weight in zip(body, ID_WEIGHTS, strict=True)) % 11
    return body + "10X98765432"[remainder]


def with_wrong_check(valid: str) -> str:
    """The same body with a check character that cannot be valid."""
    return valid[:17] + ("0" if valid[17] != "0" else "1")


VALID_ID = id_card_number("44030619850615123")
PUBLISHED_VALID_ID = "11010519491231002X"  # the worked example of GB 11643-1999


def create_table(
    conn: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame, types: dict[str, str]
) -> None:
    """Create `name` with explicit column types and insert the frame's rows, values bound as parameters."""
    columns = ", ".join(f"{quote_identifier(column)} {types[column]}" for column in frame.columns)
    conn.execute(f"CREATE TABLE {name} ({columns})")
    placeholders = ", ".join("?" for _ in frame.columns)
    rows = [list(row) for row in frame.itertuples(index=False)]
    if rows:
        conn.executemany(f"INSERT INTO {name} VALUES ({placeholders})", rows)


def counts(findings: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(column, kind) -> matches, the part of a findings frame most tests pin down."""
    return {(row.column, row.kind): row.matches for row in findings.itertuples(index=False)}


def masked_phone(phone: str) -> str:
    """The mask the scanner is expected to show for a phone, computed independently."""
    digits = re.sub(r"\D", "", phone)[-11:]
    return f"{digits[:3]}****{digits[-4:]}"


@pytest.fixture
def warehouse() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA marts; CREATE SCHEMA quarantine; CREATE SCHEMA staging")
    yield conn
    conn.close()


def test_published_id_example_has_the_check_character_the_standard_gives():
    assert id_card_number(PUBLISHED_VALID_ID[:17]) == PUBLISHED_VALID_ID


def test_phones_ids_and_emails_in_a_varchar_column_are_counted_by_kind(warehouse):
    notes = [
        "call 13800138000",
        "+86 13912345678",
        "0086-137-1234-5678",
        "138-0013-8000 after hours",
        "客服电话：15012345678。",
        "mail zhang.san@example.com",
        f"id {PUBLISHED_VALID_ID}",
        f"身份证{VALID_ID.lower()}，已核验",
        None,
        "nothing here",
    ]
    create_table(warehouse, "marts.contacts", pd.DataFrame({"note": notes}), {"note": "VARCHAR"})

    findings = scan_for_pii(warehouse)

    assert list(findings.columns) == FINDING_COLUMNS
    assert counts(findings) == {("note", "phone"): 5, ("note", "email"): 1, ("note", "id_card"): 2}
    assert set(findings["schema"]) == {"marts"} and set(findings["table"]) == {"contacts"}


def test_examples_are_masked_distinct_and_sorted(warehouse):
    notes = ["13800138000", "+86 13912345678", "0086-137-1234-5678", "138-0013-8000", "15012345678"]
    notes += ["zhang.san@example.com", PUBLISHED_VALID_ID]
    create_table(warehouse, "marts.contacts", pd.DataFrame({"note": notes}), {"note": "VARCHAR"})

    findings = scan_for_pii(warehouse).set_index("kind")

    assert findings.loc["phone", "examples"] == ["137****5678", "138****8000", "139****5678", "150****5678"]
    assert findings.loc["email", "examples"] == ["z***@example.com"]
    assert findings.loc["id_card", "examples"] == ["110***********002X"]
    printed = findings.to_string() + repr(pii_findings(findings.reset_index()))
    for raw in ["13800138000", "13912345678", "1234-5678", "zhang.san", PUBLISHED_VALID_ID[3:14]]:
        assert raw not in printed


def test_sample_limit_caps_examples_but_not_counts(warehouse):
    phones = [f"1380013{n:04d}" for n in range(8)]
    create_table(warehouse, "marts.contacts", pd.DataFrame({"note": phones}), {"note": "VARCHAR"})

    two = scan_for_pii(warehouse, sample_limit=2)
    none = scan_for_pii(warehouse, sample_limit=0)

    assert two["matches"].tolist() == [8] and two["examples"].tolist() == [["138****0000", "138****0001"]]
    assert none["matches"].tolist() == [8] and none["examples"].tolist() == [[]]
    with pytest.raises(ValueError, match="sample_limit"):
        scan_for_pii(warehouse, sample_limit=-1)


def test_pii_inside_json_is_found(warehouse):
    properties = [
        '{"contact": "13800138000"}',
        '{"path": "/pages/item/1", "duration_ms": 1200}',
        '{"traits": {"email": "a.b@qq.com", "id_card": "' + VALID_ID + '"}}',
        '{"order_id": "O20240115000123", "revenue": "199.00"}',
    ]
    create_table(
        warehouse, "marts.fct_events", pd.DataFrame({"properties": properties}), {"properties": "JSON"}
    )

    findings = scan_for_pii(warehouse)

    expected = {("properties", "phone"): 1, ("properties", "email"): 1, ("properties", "id_card"): 1}
    assert counts(findings) == expected


def test_pii_inside_lists_and_structs_is_found(warehouse):
    warehouse.execute(
        "CREATE TABLE marts.user_profile (tags VARCHAR[], contact STRUCT(label VARCHAR, score INTEGER))"
    )
    warehouse.execute(
        "INSERT INTO marts.user_profile VALUES "
        "(['vip', '13800138000'], {'label': 'a@b.cn', 'score': 1}), "
        "(['zhang@example.org', 'x'], {'label': 'plain', 'score': 2}), "
        "([], NULL), (NULL, {'label': ?, 'score': 3}), (['139 1234 5678', '137-1234-5678'], NULL)",
        [VALID_ID],
    )

    findings = scan_for_pii(warehouse)

    assert counts(findings) == {
        ("tags", "phone"): 2,
        ("tags", "email"): 1,
        ("contact", "email"): 1,
        ("contact", "id_card"): 1,
    }


def test_views_and_enum_columns_are_scanned(warehouse):
    warehouse.execute("CREATE TYPE channel AS ENUM ('miniprogram', 'tel 13800138000')")
    warehouse.execute("CREATE TABLE staging.raw (note VARCHAR, channel channel)")
    warehouse.execute("INSERT INTO staging.raw VALUES ('a@b.cn', 'tel 13800138000'), ('x', 'miniprogram')")
    warehouse.execute("CREATE VIEW marts.v_raw AS SELECT * FROM staging.raw")

    findings = scan_for_pii(warehouse)

    assert set(findings["table"]) == {"v_raw"}
    assert counts(findings) == {("note", "email"): 1, ("channel", "phone"): 1}


def look_alikes() -> list[str]:
    """Values of the shapes published tables legitimately hold, several of them built around phone digits."""
    salt = "test-salt"
    hashes = [hash_phone(f"1380013{n:04d}", salt) for n in range(2000)]
    crafted_hex = ["13800138000" + "a" * 53, "a" * 20 + "13800138000" + "b" * 33, "f" * 53 + "13800138000"]
    order_ids = ["O202401150001", "20240115138001380001", "ORD1380013800012", "1705300000000"]
    order_ids += [str(uuid.UUID(int=n * 0x1234567890ABCDEF1234567)) for n in range(1, 200)]
    twelve_digits = ["138001380001", "213800138000", "000013800138"]
    timestamps = ["2024-01-15 13:38:00", "2024-01-15T13:38:00.123456+08:00", "20240115133800", "1705300000"]
    amounts = ["13800138000.00", "199.00", "1.13800138000", "-0.50", "13800138000.5"]
    invalid_ids = [with_wrong_check(VALID_ID), with_wrong_check(PUBLISHED_VALID_ID)]
    impossible_dates = [id_card_number("44030619851315123"), id_card_number("44030618850615123")]
    embedded_ids = ["a" + PUBLISHED_VALID_ID, PUBLISHED_VALID_ID + "0", "9" + VALID_ID]
    masked = ["bad line: phone <phone> and <phone>", "user@", "@channel", "not an email @ all"]
    return (
        hashes
        + crafted_hex
        + order_ids
        + twelve_digits
        + timestamps
        + amounts
        + invalid_ids
        + impossible_dates
        + embedded_ids
        + masked
    )


def test_hashes_ids_timestamps_amounts_and_bad_checksums_are_not_flagged(warehouse):
    values = look_alikes()
    frame = pd.DataFrame({"value": values, "as_json": [f'{{"v": "{v}"}}' for v in values]})
    create_table(warehouse, "marts.fct_orders", frame, {"value": "VARCHAR", "as_json": "JSON"})
    warehouse.execute("CREATE TABLE marts.tagged AS SELECT list(value) AS values FROM marts.fct_orders")

    findings = scan_for_pii(warehouse)

    assert findings.empty, findings.to_string()
    assert list(findings.columns) == FINDING_COLUMNS


def test_an_invalid_id_does_not_hide_a_valid_one_later_in_the_value(warehouse):
    value = f"{with_wrong_check(VALID_ID)} {PUBLISHED_VALID_ID}"
    create_table(warehouse, "marts.contacts", pd.DataFrame({"note": [value]}), {"note": "VARCHAR"})

    findings = scan_for_pii(warehouse)

    assert findings[["kind", "matches"]].values.tolist() == [["id_card", 1]]
    assert findings["examples"].tolist() == [["110***********002X"]]


def test_random_18_digit_numbers_are_flagged_exactly_when_their_checksum_holds(warehouse):
    rng = np.random.default_rng(7)
    bodies = [
        f"{rng.integers(110000, 660000)}{rng.integers(1950, 2010)}{rng.integers(1, 13):02d}"
        f"{rng.integers(1, 29):02d}{rng.integers(0, 1000):03d}"
        for _ in range(3000)
    ]
    numbers = [body + str(rng.integers(0, 10)) for body in bodies]
    truly_valid = sum(number == id_card_number(number[:17]) for number in numbers)
    create_table(warehouse, "marts.numbers", pd.DataFrame({"value": numbers}), {"value": "VARCHAR"})

    findings = scan_for_pii(warehouse)

    assert 200 < truly_valid < 400  # about 1 in 11, so the checksum is what separates them
    assert counts(findings) == {("value", "id_card"): truly_valid}


def test_only_the_requested_schemas_are_scanned(warehouse):
    create_table(warehouse, "staging.users", pd.DataFrame({"phone": ["13800138000"]}), {"phone": "VARCHAR"})
    warehouse.execute("CREATE TABLE marts.numbers_only (amount DECIMAL(14, 2), n BIGINT)")
    warehouse.execute("INSERT INTO marts.numbers_only VALUES (13800138000.00, 13800138000)")

    assert scan_for_pii(warehouse).empty
    staging = scan_for_pii(warehouse, schemas=("staging",))
    assert staging[["schema", "table", "column", "kind", "matches"]].values.tolist() == [
        ["staging", "users", "phone", "phone", 1]
    ]


def test_names_needing_quotes_are_scanned_and_reported_verbatim(warehouse):
    table, column = 'odd "name"; DROP TABLE marts.keep; --', 'my "col"'
    warehouse.execute("CREATE TABLE marts.keep (x INTEGER)")
    create_table(
        warehouse,
        f"marts.{quote_identifier(table)}",
        pd.DataFrame({column: ["13800138000"]}),
        {column: "VARCHAR"},
    )

    findings = scan_for_pii(warehouse)

    assert findings[["table", "column", "kind", "matches"]].values.tolist() == [[table, column, "phone", 1]]
    assert warehouse.execute("SELECT count(*) FROM marts.keep").fetchone() == (0,)


def test_findings_convert_to_readable_records(warehouse):
    create_table(
        warehouse,
        "quarantine.rejected_records",
        pd.DataFrame({"raw_record": ["x 13800138000"]}),
        {"raw_record": "VARCHAR"},
    )

    (finding,) = pii_findings(scan_for_pii(warehouse))

    assert finding == PiiFinding("quarantine", "rejected_records", "raw_record", "phone", 1, ("138****8000",))
    assert str(finding) == "quarantine.rejected_records.raw_record: 1 value(s) with a phone (138****8000)"


mobile_numbers = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)
written_phones = st.builds(
    lambda prefix, number, separator: prefix + separator.join([number[:3], number[3:7], number[7:]]),
    st.sampled_from(["", "+86", "+86 ", "+86-", "0086", "0086 ", "0086-"]),
    mobile_numbers,
    st.sampled_from(["", " ", "-"]),
)
# Hex letters are excluded too: a phone glued to them is deliberately indistinguishable from part of a hash.
surrounding_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="0123456789ABCDEFabcdef"),
    max_size=12,
)
embedded_phones = st.builds(
    lambda before, phone, after: (before + phone + after, phone),
    surrounding_text,
    written_phones,
    surrounding_text,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(embedded_phones, min_size=1, max_size=8))
def test_any_phone_surrounded_by_non_digits_is_found(rows):
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA marts")
    texts = [text for text, _ in rows]
    create_table(conn, "marts.notes", pd.DataFrame({"note": texts}), {"note": "VARCHAR"})

    findings = scan_for_pii(conn, sample_limit=len(rows))
    conn.close()

    phones = findings[findings["kind"] == "phone"]
    assert phones["matches"].tolist() == [len(rows)]
    assert phones["examples"].iloc[0] == sorted({masked_phone(phone) for _, phone in rows})


birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
id_bodies = st.builds(
    lambda region, born, sequence: f"{region}{born:%Y%m%d}{sequence:03d}",
    st.integers(100000, 999999),
    birth_dates,
    st.integers(0, 999),
)


@settings(max_examples=40, deadline=None)
@given(id_bodies)
def test_an_id_number_is_found_only_with_its_own_check_character(body):
    valid = id_card_number(body)
    wrong = [body + check for check in "0123456789X" if check != valid[17]]
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA marts")
    create_table(conn, "marts.ids", pd.DataFrame({"value": [valid, *wrong]}), {"value": "VARCHAR"})

    findings = scan_for_pii(conn)
    conn.close()

    assert findings[["kind", "matches"]].values.tolist() == [["id_card", 1]]
    assert findings["examples"].tolist() == [[f"{valid[:3]}{'*' * 11}{valid[-4:]}"]]


@pytest.mark.slow
def test_ten_million_rows_scan_in_duckdb_with_exact_counts():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA marts")
    conn.execute(
        """
        CREATE TABLE marts.fct_events AS
        SELECT 'evt_' || lpad(i::VARCHAR, 10, '0') AS event_id,
               md5(i::VARCHAR) || md5((i + 1)::VARCHAR) AS user_key,
               CASE
                   WHEN i % 100000 = 0 THEN '{"contact": "138' || lpad((i // 100000)::VARCHAR, 8, '0') || '"}'
                   WHEN i % 250000 = 1 THEN '{"mail": "u' || i || '@example.com"}'
                   ELSE '{"path": "/p/' || i || '", "ts": "2024-01-15T13:38:00Z", "amount": "199.00"}'
               END AS properties
        FROM range(10000000) AS r(i)
        """
    )

    started = time.perf_counter()
    findings = scan_for_pii(conn)
    elapsed = time.perf_counter() - started
    conn.close()

    assert counts(findings) == {("properties", "phone"): 100, ("properties", "email"): 40}
    print(f"scanned 10M rows x 3 string columns in {elapsed:.1f} s")
