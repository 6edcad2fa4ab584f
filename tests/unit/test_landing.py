"""Ingestion of landed files: exact outcomes on small hand-made files."""

import gzip
import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.landing import ingest_folder
from orchestration.pii import hash_phone, normalise_phone

SALT = "test-salt"


def event(message_id="m1", **overrides):
    record = {
        "messageId": message_id,
        "type": "track",
        "event": "Product Viewed",
        "userId": "U1",
        "anonymousId": "A1",
        "timestamp": "2026-01-01T10:00:00Z",
        "properties": {"product_id": "P1"},
        "context": {"channel": "miniprogram"},
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def write_jsonl(path: Path, lines: list, compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines)
        + "\n"
    )
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())


ORDER_HEADER = (
    "order_id,user_id,phone,channel,store_id,status,ordered_at,paid_amount,discount_amount,coupon_code,updated_at"
)


def write_csv(path: Path, header: str, rows: list[str], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute("set TimeZone = 'Asia/Shanghai'")
    yield connection
    connection.close()


def quarantine(conn):
    return conn.execute(
        "select source_file, line_number, reason from quarantine.rejected_records order by source_file, line_number"
    ).fetchall()


def test_every_event_reason_is_exact(conn, tmp_path):
    write_jsonl(
        tmp_path / "events" / "day1.jsonl",
        [
            event("m1"),
            event("m2", type="identify", event=None, traits={"phone": "+86 138-0013-8000", "nickname": "x"}),
            event("m1", userId="someone-else"),  # duplicate messageId: the first copy wins
            event("m3", event=None),
            event("m4", userId=None, anonymousId=None),
            event("m5", timestamp="yesterday"),
            '{"messageId": "m6",',
            "",
            event("m7", type="bogus"),
            event(None),
            event("x" * 129),
            event("m8", timestamp=None),
            event("m9", type="alias", event=None),
            "[1, 2]",
        ],
    )
    result = ingest_folder(conn, tmp_path, "events", SALT)
    stats = result.files[0]
    assert (stats.read, stats.loaded, stats.quarantined, stats.duplicates) == (13, 2, 10, 1)
    assert quarantine(conn) == [
        ("events/day1.jsonl", 4, "track call without an event name"),
        ("events/day1.jsonl", 5, "missing both userId and anonymousId"),
        ("events/day1.jsonl", 6, "unparsable timestamp (ISO 8601 expected)"),
        ("events/day1.jsonl", 7, "malformed JSON: the line cannot be parsed"),
        ("events/day1.jsonl", 9, "unknown type (expected track, page, screen, identify or alias)"),
        ("events/day1.jsonl", 10, "missing messageId (a non-empty string is required)"),
        ("events/day1.jsonl", 11, "messageId longer than 128 characters"),
        ("events/day1.jsonl", 12, "missing timestamp"),
        ("events/day1.jsonl", 13, "alias call without previousId"),
        ("events/day1.jsonl", 14, "not a JSON object"),
    ]
    rows = conn.execute(
        "select message_id, user_id, traits::varchar, traits_phone_hash from raw.events order by message_id"
    ).fetchall()
    assert rows == [
        ("m1", "U1", None, None),
        ("m2", "U1", '{"nickname":"x"}', hash_phone("13800138000", SALT)),
    ]


def test_timestamps_are_stored_in_utc_whatever_the_offset(conn, tmp_path):
    write_jsonl(
        tmp_path / "events" / "a.jsonl",
        [
            event("z", timestamp="2026-03-01T10:23:45.123Z"),
            event("offset", timestamp="2026-03-01T18:23:45+08:00"),
            event("local", timestamp="2026-03-01 18:23:45"),
        ],
    )
    ingest_folder(conn, tmp_path, "events", SALT)
    got = dict(
        conn.execute(
            "select message_id, strftime(occurred_at, '%Y-%m-%d %H:%M:%S.%g') from raw.events"
        ).fetchall()
    )
    assert got == {
        "z": "2026-03-01 10:23:45.123",
        "offset": "2026-03-01 10:23:45.000",
        "local": "2026-03-01 10:23:45.000",
    }


def test_local_time_follows_the_session_timezone(tmp_path):
    connection = duckdb.connect()
    connection.execute("set TimeZone = 'Europe/London'")
    write_jsonl(tmp_path / "events" / "a.jsonl", [event("local", timestamp="2026-07-01 12:00:00")])
    ingest_folder(connection, tmp_path, "events", SALT)
    assert (
        str(connection.execute("select occurred_at from raw.events").fetchall()[0][0])
        == "2026-07-01 11:00:00"
    )


def test_duplicates_across_files_and_runs_count_once(conn, tmp_path):
    write_jsonl(tmp_path / "events" / "2026" / "01" / "a.jsonl", [event("m1"), event("m2")])
    first = ingest_folder(conn, tmp_path, "events", SALT)
    write_jsonl(tmp_path / "events" / "2026" / "01" / "b.jsonl.gz", [event("m2"), event("m3")], compress=True)
    second = ingest_folder(conn, tmp_path, "events", SALT)
    third = ingest_folder(conn, tmp_path, "events", SALT)
    assert first.totals()["records_loaded"] == 2
    assert (second.files[0].loaded, second.files[0].duplicates) == (1, 1)
    assert second.skipped_unchanged == 1
    assert third.totals()["files_ingested"] == 0 and third.skipped_unchanged == 2
    assert conn.execute("select count(*) from raw.events").fetchall()[0][0] == 3


def test_a_file_changed_after_ingestion_is_reported_not_reread(conn, tmp_path):
    path = tmp_path / "events" / "a.jsonl"
    write_jsonl(path, [event("m1")])
    ingest_folder(conn, tmp_path, "events", SALT)
    write_jsonl(path, [event("m1"), event("m2")])
    result = ingest_folder(conn, tmp_path, "events", SALT)
    assert result.changed_files == ["events/a.jsonl"]
    assert result.totals()["records_read"] == 0
    assert conn.execute("select count(*) from raw.events").fetchall()[0][0] == 1
    assert conn.execute("select relative_path from raw.changed_files").fetchall() == [("events/a.jsonl",)]


def test_non_utf8_file_is_rejected_whole_with_a_clear_reason(conn, tmp_path):
    write_csv(
        tmp_path / "orders" / "gbk.csv",
        ORDER_HEADER,
        ["O1,U1,,miniprogram,,paid,2026-01-01 10:00:00,10.00,0.00,满减券,2026-01-01 10:00:00"],
        encoding="gbk",
    )
    result = ingest_folder(conn, tmp_path, "orders", SALT)
    stats = result.files[0]
    assert (stats.read, stats.loaded, stats.quarantined) == (2, 0, 2)
    reasons = {reason for _, _, reason in quarantine(conn)}
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith("whole file rejected: not valid UTF-8") and "GBK" in reason
    assert conn.execute("select count(*) from raw.orders").fetchall()[0][0] == 0


def test_utf16_and_bom_files_are_decoded(conn, tmp_path):
    row = "O1,U1,,miniprogram,,paid,2026-01-01 10:00:00,10.00,0.00,满减券,2026-01-01 10:00:00"
    write_csv(tmp_path / "orders" / "a.csv", ORDER_HEADER, [row], encoding="utf-16")
    write_csv(tmp_path / "orders" / "b.csv", "\ufeff" + ORDER_HEADER, [row.replace("O1", "O2")])
    result = ingest_folder(conn, tmp_path, "orders", SALT)
    assert result.totals()["records_loaded"] == 2
    assert conn.execute("select coupon_code from raw.orders order by order_id").fetchall() == [
        ("满减券",),
        ("满减券",),
    ]


def test_csv_rows_are_typed_and_bad_rows_quarantined(conn, tmp_path):
    write_csv(
        tmp_path / "orders" / "o.csv",
        ORDER_HEADER,
        [
            "O1,U1,13800138000,miniprogram,,paid,2026-01-01 10:00:00,10.50,1.00,C1,2026-01-01 10:00:00",
            "O2,,,offline_store,S1,paid,2026-01-01 10:00:00,10.50,0.00,,2026-01-01 10:00:00",
            "O3,U2,,app,,paid,2026-01-01 10:00:00,-1,0.00,,2026-01-01 10:00:00",
            "O4,U2,,app,,shipped,2026-01-01 10:00:00,1,0.00,,2026-01-01 10:00:00",
            "O5,U2,,app,,paid,2026-01-01 10:00:00,abc,0.00,,2026-01-01 10:00:00",
            "O6,U2,,app,,paid,not a date,1,0.00,,2026-01-01 10:00:00",
            "O7,U2,,app",
            ",U2,,app,,paid,2026-01-01 10:00:00,1,0.00,,2026-01-01 10:00:00",
            '"O8",U3,,app,,refunded,2026-01-01 10:00:00,"1,000.00",0.00,,2026-01-01 10:00:00',
        ],
    )
    result = ingest_folder(conn, tmp_path, "orders", SALT)
    assert (result.files[0].read, result.files[0].loaded, result.files[0].quarantined) == (9, 1, 8)
    assert quarantine(conn) == [
        ("orders/o.csv", 3, "order has neither user_id nor phone"),
        ("orders/o.csv", 4, "negative paid_amount"),
        ("orders/o.csv", 5, "status is not one of paid|refunded|cancelled"),
        ("orders/o.csv", 6, "paid_amount is not a number"),
        ("orders/o.csv", 7, "ordered_at is not a valid timestamp"),
        ("orders/o.csv", 8, "row has 4 fields but the header has 11"),
        ("orders/o.csv", 9, "missing order_id"),
        ("orders/o.csv", 10, "paid_amount is not a number"),
    ]
    row = conn.execute(
        "select order_id, phone, paid_amount::varchar, ordered_at::varchar from raw.orders"
    ).fetchall()
    assert row == [("O1", hash_phone("13800138000", SALT), "10.50", "2026-01-01 02:00:00")]


def test_header_problems_reject_the_file(conn, tmp_path):
    write_csv(tmp_path / "order_items" / "missing.csv", "order_id,line_no,product_id", ["O1,1,P1"])
    write_csv(
        tmp_path / "order_items" / "twice.csv",
        "order_id,line_no,product_id,quantity,quantity,unit_price",
        ["O1,1,P1,1,1,2.00"],
    )
    write_csv(
        tmp_path / "order_items" / "extra.csv",
        "order_id,line_no,product_id,quantity,unit_price,colour",
        ["O1,1,P1,2,3.50,red", "O1,2,P2,-2,3.50,red"],
    )
    result = ingest_folder(conn, tmp_path, "order_items", SALT)
    by_file = {f.relative_path: f for f in result.files}
    assert by_file["order_items/extra.csv"].note == "ignored extra column(s): colour"
    assert (by_file["order_items/extra.csv"].loaded, by_file["order_items/extra.csv"].quarantined) == (1, 1)
    assert quarantine(conn) == [
        ("order_items/extra.csv", 3, "negative quantity"),
        ("order_items/missing.csv", 2, "header is missing required column(s): quantity, unit_price"),
        ("order_items/twice.csv", 2, "header repeats column(s): quantity"),
    ]


def test_phone_numbers_never_reach_quarantine_text(conn, tmp_path):
    write_csv(
        tmp_path / "orders" / "o.csv",
        ORDER_HEADER,
        ["O1,,13800138000,offline_store,S1,paid,2026-01-01 10:00:00,-5,0.00,,2026-01-01 10:00:00"],
    )
    write_jsonl(tmp_path / "events" / "e.jsonl", ['{"traits": {"phone": "13912345678"}, "broken'])
    ingest_folder(conn, tmp_path, "orders", SALT)
    ingest_folder(conn, tmp_path, "events", SALT)
    text = " ".join(
        r[0] for r in conn.execute("select raw_record from quarantine.rejected_records").fetchall()
    )
    assert "13800138000" not in text and "13912345678" not in text
    assert "<phone>" in text


def test_missing_and_empty_folders_are_normal(conn, tmp_path):
    (tmp_path / "events").mkdir()
    for folder in ("events", "users", "orders"):
        result = ingest_folder(conn, tmp_path, folder, SALT)
        assert result.totals()["files_ingested"] == 0


def test_phone_normalisation():
    assert normalise_phone("+86 138-0013-8000") == "13800138000"
    assert normalise_phone("008613800138000") == "13800138000"
    assert normalise_phone("8613800138000") == "13800138000"
    assert hash_phone("138 0013 8000", SALT) == hash_phone("13800138000", SALT)
    assert hash_phone("13800138000", SALT) != hash_phone("13800138000", "other")


LINE = st.one_of(
    st.builds(
        lambda i, t, uid: json.dumps(event(f"m{i}", type=t, userId=uid, event="E" if t == "track" else None)),
        st.integers(0, 30),
        st.sampled_from(["track", "page", "identify", "bogus"]),
        st.sampled_from(["U1", None]),
    ),
    st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(LINE, max_size=25), min_size=1, max_size=4))
def test_every_landed_record_is_loaded_quarantined_or_a_counted_duplicate(tmp_path_factory, files):
    landing = tmp_path_factory.mktemp("landing")
    connection = duckdb.connect()
    for number, lines in enumerate(files):
        write_jsonl(landing / "events" / f"f{number}.jsonl", lines)
    result = ingest_folder(connection, landing, "events", SALT, batch_lines=10)
    non_blank = sum(1 for lines in files for line in lines if line.strip())
    totals = result.totals()
    assert totals["records_read"] == non_blank
    assert all(f.balanced for f in result.files)
    assert totals["records_loaded"] == connection.execute("select count(*) from raw.events").fetchall()[0][0]
    assert (
        totals["records_quarantined"]
        == connection.execute("select count(*) from quarantine.rejected_records").fetchall()[0][0]
    )
    distinct_ids = connection.execute("select count(distinct message_id) from raw.events").fetchall()[0][0]
    assert distinct_ids == totals["records_loaded"]
