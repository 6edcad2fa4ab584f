import hashlib
import hmac
import json
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.landing import CSV_SOURCES, parse_csv
from orchestration.pii import hash_phone
from orchestration.privacy import (
    DevSaltError,
    check_salt,
    expand_to_people,
    free_text_pattern,
    keyed_hash,
    leftover_mentions,
    normalise_requests,
    register_keyed_hash,
    rewrite_exports,
    run_erasure,
    unbalanced_files,
)
from orchestration.settings import DEV_PII_SALT, Settings

SALT = "unit-test-salt"


def settings_with(salt: str, landing: Path) -> Settings:
    return Settings(landing, landing / "w.duckdb", "Asia/Shanghai", salt, date(2026, 1, 1))


def test_erasure_request_phones_are_hashed_at_landing_but_other_identifiers_are_not():
    text = (
        "request_id,identifier_type,identifier_value,requested_at\n"
        "r1,phone,+86 138-0013-8000,2026-01-01T00:00:00Z\n"
        "r2,user_id,U123,2026-01-01T00:00:00Z\n"
    )
    parsed = parse_csv(text, CSV_SOURCES["erasure_requests"], SALT)
    assert parsed.columns["identifier_value"] == [hash_phone("13800138000", SALT), "U123"]
    assert "138" not in parsed.raw_records[0] and hash_phone("13800138000", SALT) in parsed.raw_records[0]


def test_keyed_hash_is_hmac_of_type_and_value_and_matches_duckdb():
    expected = hmac.new(SALT.encode(), b"openid:oX1", hashlib.sha256).hexdigest()
    assert keyed_hash("openid", "oX1", SALT) == expected
    conn = duckdb.connect()
    register_keyed_hash(conn, SALT)
    assert conn.execute("select hx_keyed_hash('openid:oX1')").fetchall() == [(expected,)]


@settings(max_examples=30, deadline=None)
@given(salt=st.text(min_size=1, max_size=100), value=st.text(max_size=40))
def test_sql_keyed_hash_equals_python_for_any_key_and_value(salt, value):
    conn = duckdb.connect()
    register_keyed_hash(conn, salt)
    assert conn.execute("select hx_keyed_hash(?)", [f"user_id:{value}"]).fetchall()[0][0] == keyed_hash(
        "user_id", value, salt
    )


def test_check_salt_refuses_the_dev_key_on_real_data_only(tmp_path, monkeypatch):
    monkeypatch.delenv("HUAXIANG_ALLOW_DEV_SALT", raising=False)
    with pytest.raises(DevSaltError, match="public development key"):
        check_salt(settings_with(DEV_PII_SALT, tmp_path))
    with pytest.raises(DevSaltError, match="empty"):
        check_salt(settings_with("", tmp_path))
    check_salt(settings_with("a-real-secret", tmp_path))
    monkeypatch.setenv("HUAXIANG_ALLOW_DEV_SALT", "1")
    check_salt(settings_with(DEV_PII_SALT, tmp_path))
    monkeypatch.delenv("HUAXIANG_ALLOW_DEV_SALT")
    (tmp_path / "_truth").mkdir()
    (tmp_path / "_truth" / "summary.json").write_text("{}")
    check_salt(settings_with(DEV_PII_SALT, tmp_path))


def test_normalise_requests_hashes_raw_phones_once():
    already = hash_phone("13800138000", SALT)
    requests = pd.DataFrame(
        {
            "request_id": ["a", "b", "c"],
            "identifier_type": ["phone", "phone", "user_id"],
            "identifier_value": ["138 0013 8000", already, " U1 "],
        }
    )
    assert normalise_requests(requests, SALT)["identifier_value"].tolist() == [already, already, "U1"]


def test_expand_to_people_takes_every_identifier_of_the_person_and_leaves_unknown_ones_alone():
    identity_map = pd.DataFrame(
        {
            "identifier_type": ["user_id", "openid", "anonymous_id", "user_id"],
            "identifier_value": ["U1", "o1", "d1", "U2"],
            "user_key": ["k1", "k1", "k1", "k2"],
        }
    )
    requests = pd.DataFrame(
        {
            "request_id": ["r1", "r2"],
            "identifier_type": ["openid", "unionid"],
            "identifier_value": ["o1", "x9"],
        }
    )
    targets = expand_to_people(requests, identity_map)
    got = sorted(
        map(tuple, targets[["request_id", "identifier_type", "identifier_value"]].to_numpy().tolist())
    )
    assert got == [
        ("r1", "anonymous_id", "d1"),
        ("r1", "openid", "o1"),
        ("r1", "user_id", "U1"),
        ("r1", "user_key", "k1"),
        ("r2", "unionid", "x9"),
    ]


def test_free_text_pattern_matches_whole_tokens_only():
    pattern = free_text_pattern(["oABC123", "42"])
    conn = duckdb.connect()
    texts = ['{"id":"oABC123"}', "oABC1234", "xoABC123", "a oABC123", "42"]
    found = [conn.execute("select regexp_matches(?, ?)", [t, pattern]).fetchall()[0][0] for t in texts]
    assert found == [True, False, False, True, False]  # "42" is too short for free text
    assert free_text_pattern(["42"]) is None


def test_rewrite_exports_drops_only_rows_naming_the_person(tmp_path):
    (tmp_path / "a.csv").write_text(
        "user_key,openid\nk_aaaaaaa1,o_keep_1\nk_gone_123,o_x\nk_3333333,o_gone_99\n"
    )
    (tmp_path / "b.csv").write_text("user_key\nk_other_1\n")
    removed = rewrite_exports(tmp_path, free_text_pattern(["k_gone_123", "o_gone_99"]))
    assert removed == 2
    assert (tmp_path / "a.csv").read_text().splitlines() == ["user_key,openid", "k_aaaaaaa1,o_keep_1"]
    assert (tmp_path / "b.csv").read_text() == "user_key\nk_other_1\n"


def small_warehouse() -> duckdb.DuckDBPyConnection:
    """A hand-made warehouse: two people, their raw rows, identity, an ML table and a referral mention."""
    conn = duckdb.connect()
    phone = hash_phone("13800138000", SALT)
    conn.execute("create schema raw; create schema identity; create schema ml; create schema quarantine")
    conn.execute(
        """
        create table raw.landed_files as select * from (values
            ('users/u.csv', 2::bigint, 0::bigint, 1), ('events/e.jsonl', 3::bigint, 1::bigint, 2),
            ('erasure_requests/r.csv', 1::bigint, 0::bigint, 3))
            t(relative_path, records_loaded, records_quarantined, file_seq);
        create table raw.users as select * from (values
            ('U1', 'PHONE', 'users/u.csv', 1), ('U2', null, 'users/u.csv', 1))
            t(user_id, phone, source_file, file_seq);
        create table raw.events as select * from (values
            ('m1', 'U1', 'dev-aaaaaa', null, '{}'::json, null, 'events/e.jsonl', 2),
            ('m2', null, 'dev-aaaaaa', null, '{}'::json, null, 'events/e.jsonl', 2),
            ('m3', 'U2', 'dev-bbbbbb', null, '{"referrer":{"type":"share","id":"dev-aaaaaa"}}'::json, null,
             'events/e.jsonl', 2))
            t(message_id, user_id, anonymous_id, previous_id, context, traits_phone_hash,
              source_file, file_seq);
        create table raw.erasure_requests as select * from (values
            ('r1', 'phone', 'PHONE', timestamp '2026-01-01', 'erasure_requests/r.csv', 1, 3))
            t(request_id, identifier_type, identifier_value, requested_at, source_file, line_number,
              file_seq);
        create table quarantine.rejected_records as select * from (values
            ('events/e.jsonl', 9, 'bad', '{"anonymousId":"dev-aaaaaa"', 2))
            t(source_file, line_number, reason, raw_record, file_seq);
        create table identity.identity_map as select * from (values
            ('user_id', 'U1', 'key_one_1'), ('phone', 'PHONE', 'key_one_1'),
            ('anonymous_id', 'dev-aaaaaa', 'key_one_1'),
            ('user_id', 'U2', 'key_two_2'), ('anonymous_id', 'dev-bbbbbb', 'key_two_2'))
            t(identifier_type, identifier_value, user_key);
        create table ml.user_clv as
            select * from (values ('key_one_1', 1.0), ('key_two_2', 2.0)) t(user_key, clv);
        """.replace("PHONE", phone)  # a 64-hex hash made by the test, safe to inline
    )
    return conn


def test_run_erasure_removes_the_person_everywhere_and_logs_counts_without_identifiers(tmp_path):
    conn = small_warehouse()
    outcome = run_erasure(conn, SALT, tmp_path / "exports")
    assert outcome.leftovers.empty
    assert conn.execute("select user_id from raw.users").fetchall() == [("U2",)]
    assert conn.execute("select message_id from raw.events").fetchall() == [("m3",)]
    assert conn.execute("select context->>'$.referrer.id' from raw.events").fetchall() == [("[erased]",)]
    assert conn.execute("select count(*) from quarantine.rejected_records").fetchall() == [(0,)]
    assert conn.execute("select user_key from ml.user_clv").fetchall() == [("key_two_2",)]
    assert conn.execute("select distinct user_key from identity.identity_map").fetchall() == [("key_two_2",)]
    log = conn.execute(
        "select request_id, identifier_type, person_found, rows_removed from privacy.erasure_log"
    )
    request_id, identifier_type, person_found, rows_removed = log.fetchall()[0]
    assert (request_id, identifier_type, person_found) == ("r1", "phone", True)
    assert json.loads(rows_removed) == {
        "identity.identity_map": 3,
        "ml.user_clv": 1,
        "quarantine.rejected_records": 1,
        "raw.erasure_requests": 1,
        "raw.events": 2,
        "raw.users": 1,
    }
    everything = leftover_mentions(conn, ["U1", "dev-aaaaaa", "key_one_1", hash_phone("13800138000", SALT)])
    assert everything.empty
    assert unbalanced_files(conn).empty  # loaded = still held + removed, per file
    hashes = {
        row[0] for row in conn.execute("select identifier_hash from privacy.erased_identifiers").fetchall()
    }
    assert keyed_hash("anonymous_id", "dev-aaaaaa", SALT) in hashes


def test_records_landed_after_an_erasure_are_suppressed_and_counted(tmp_path):
    conn = small_warehouse()
    run_erasure(conn, SALT, tmp_path)
    conn.execute(
        """
        insert into raw.landed_files values ('events/later.jsonl', 2, 1, 4);
        insert into raw.events values
            ('m9', null, 'dev-aaaaaa', null, '{}'::json, null, 'events/later.jsonl', 4),
            ('m10', 'U2', 'dev-bbbbbb', null, '{}'::json, null, 'events/later.jsonl', 4);
        insert into quarantine.rejected_records values ('events/later.jsonl', 3, 'bad', '{"userId":"U1",', 4);
        """
    )
    outcome = run_erasure(conn, SALT, tmp_path)
    assert outcome.suppressed == 2 and outcome.log.empty
    assert conn.execute("select message_id from raw.events order by 1").fetchall() == [("m10",), ("m3",)]
    assert conn.execute("select count(*) from quarantine.rejected_records").fetchall() == [(0,)]
    removed = conn.execute(
        "select table_name, records_removed from privacy.removed_records"
        " where reason = 'suppressed' order by 1"
    ).fetchall()
    assert removed == [("quarantine.rejected_records", 1), ("raw.events", 1)]
    assert unbalanced_files(conn).empty
