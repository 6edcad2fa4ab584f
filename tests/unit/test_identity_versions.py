"""identity_map.changed_in_run: the run in which an identifier's person (or sharing) last changed."""

import duckdb
import pandas as pd

from ml_assets.identity import IdentityResult
from orchestration.identity_assets import write_identity

EMPTY_SHARED = pd.DataFrame({"identifier_type": pd.Series(dtype="str"), "identifier_value": pd.Series(dtype="str")})
EMPTY_HISTORY = pd.DataFrame(
    {name: pd.Series(dtype="str") for name in ("old_user_key", "new_user_key", "reason")}
    | {"changed_at": pd.Series(dtype="datetime64[us]")}
)
EMPTY_AUDIT = pd.DataFrame({"user_key": pd.Series(dtype="str")})


def result(rows: list[tuple[str, str, str, bool]]) -> IdentityResult:
    identity_map = pd.DataFrame(rows, columns=["identifier_type", "identifier_value", "user_key", "is_shared"])
    return IdentityResult(identity_map, EMPTY_SHARED, EMPTY_HISTORY, EMPTY_AUDIT, {})


def versions(conn) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "select identifier_type, identifier_value, changed_in_run from identity.identity_map"
    ).fetchall()
    return {(kind, value): run for kind, value, run in rows}


FIRST = [("user_id", "U1", "k1", False), ("anonymous_id", "D1", "k1", False), ("anonymous_id", "D2", "k2", False)]


def test_first_run_numbers_everything_one():
    with duckdb.connect() as conn:
        write_identity(conn, result(FIRST))
        assert set(versions(conn).values()) == {1}


def test_only_moved_new_or_newly_shared_identifiers_get_the_next_number():
    with duckdb.connect() as conn:
        write_identity(conn, result(FIRST))
        write_identity(conn, result(FIRST))  # nothing changed: numbers stay
        assert set(versions(conn).values()) == {1}
        write_identity(
            conn,
            result(
                [
                    ("user_id", "U1", "k1", False),
                    ("anonymous_id", "D1", "k1", True),  # became shared
                    ("anonymous_id", "D2", "k1", False),  # merged into k1
                    ("openid", "O1", "k3", False),  # new
                ]
            ),
        )
        assert versions(conn) == {
            ("user_id", "U1"): 1,
            ("anonymous_id", "D1"): 2,
            ("anonymous_id", "D2"): 2,
            ("openid", "O1"): 2,
        }
        write_identity(conn, result([("user_id", "U1", "k1", False), ("openid", "O1", "k4", False)]))
        assert versions(conn) == {("user_id", "U1"): 1, ("openid", "O1"): 3}


def test_a_map_written_before_versions_existed_counts_as_run_zero():
    with duckdb.connect() as conn:
        conn.execute("create schema identity")
        conn.execute(
            "create table identity.identity_map as select * from (values"
            " ('user_id', 'U1', 'k1', false), ('anonymous_id', 'D2', 'k9', false))"
            " t(identifier_type, identifier_value, user_key, is_shared)"
        )
        write_identity(conn, result(FIRST))
        assert versions(conn) == {("user_id", "U1"): 0, ("anonymous_id", "D1"): 1, ("anonymous_id", "D2"): 1}
