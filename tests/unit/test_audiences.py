"""Audiences: exact members on a hand-made profile, consent exclusions, and the hash-based control group."""

import hashlib
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml_assets.audiences import (
    AudienceCatalogueError,
    append_membership_history,
    audience_members,
    audience_summary,
    check_tag_references,
    compile_rule,
    control_draws,
    load_audiences,
    match_audiences,
    referenced_tags,
)
from ml_assets.tags import load_catalogue
from orchestration.activation import UnknownAudienceError, export_audience

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC_KEYS = pd.Series([f"u{i:06d}" for i in range(100_000)])


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute(
        """
        create table profile as select * from (values
            ('a', true,  true,  'high', 'mature',   ['high_value', 'repeat_buyer']),
            ('b', false, true,  'high', 'mature',   ['high_value']),
            ('c', true,  false, null,   null,       null),
            ('d', true,  true,  'low',  'prospect', ['silent_30_days']),
            ('e', null,  true,  'high', 'growing',  ['high_value'])
        ) t(user_key, has_marketing_consent, has_profiling_consent, value_tier, lifecycle_stage, tags)
        """
    )
    yield connection
    connection.close()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audiences.yml"
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = '  - name: {name}\n    purpose: p\n    description: d\n    owner: o\n    rule: "{rule}"\n'


def test_the_shipped_catalogue_has_the_five_required_audiences_and_only_known_tags():
    audiences = load_audiences(REPO / "catalogue" / "audiences.yml")
    assert [a.name for a in audiences] == [
        "high_value_perks",
        "high_value_winback",
        "second_purchase_offer",
        "silent_prospect_activation",
        "price_sensitive_coupon",
    ]
    assert {a.control_share for a in audiences} == {0.1}
    plain_tags = {t.id for t in load_catalogue(REPO / "catalogue" / "tags.yml") if t.for_each is None}
    check_tag_references(audiences, plain_tags)
    assert referenced_tags(audiences[0].rule) == ["high_value"]


def test_tag_shorthand_becomes_list_contains_but_quoted_text_is_left_alone():
    assert compile_rule("tag:high_value and note = 'tag:x' and tag:bought_category:母婴") == (
        "list_contains(tags, 'high_value') and note = 'tag:x' and list_contains(tags, 'bought_category:母婴')"
    )
    assert compile_rule("not list_contains(tags, 'champion')") == "not list_contains(tags, 'champion')"
    assert referenced_tags("tag:b or list_contains(tags, 'a') or x = 'tag:c'") == ["a", "b"]


def test_rules_select_people_and_consent_decides_membership(conn, tmp_path):
    path = write(
        tmp_path,
        "audiences:\n"
        + ENTRY.format(name="perks", rule="tag:high_value")
        + ENTRY.format(name="prospects", rule="lifecycle_stage = 'prospect' or value_tier is null")
        + "    control_share: 0\n",
    )
    audiences = load_audiences(path)
    matches = match_audiences(conn, audiences, "profile")
    assert sorted(map(tuple, matches.to_numpy().tolist())) == [
        ("perks", "a", True, True),
        ("perks", "b", False, True),
        ("perks", "e", False, True),  # no decision recorded: the contract's default is "not granted"
        ("prospects", "c", True, False),
        ("prospects", "d", True, True),
    ]
    members = audience_members(matches, audiences)
    assert sorted(zip(members["audience"], members["user_key"], strict=True)) == [
        ("perks", "a"),
        ("prospects", "d"),
    ]
    assert not members.loc[members["audience"] == "prospects", "is_control"].any()

    summary = audience_summary(audiences, matches, members, date(2026, 6, 30)).set_index("audience")
    assert summary.loc[
        "perks", ["matched_people", "excluded_without_marketing_consent", "members"]
    ].tolist() == [
        3,
        2,
        1,
    ]
    assert summary.loc["prospects", "excluded_without_profiling_consent"] == 1
    assert summary.loc["prospects", "excluded_without_marketing_consent"] == 0
    assert (
        summary["matched_people"]
        == summary["members"]
        + summary["excluded_without_marketing_consent"]
        + summary["excluded_without_profiling_consent"]
    ).all()
    assert (summary["members"] == summary["treatment_members"] + summary["control_members"]).all()


def test_broken_rules_and_unknown_tags_are_reported_with_audience_and_line(conn, tmp_path):
    path = write(
        tmp_path,
        "audiences:\n"
        + ENTRY.format(name="fine", rule="tag:high_value")
        + ENTRY.format(name="typo_column", rule="valeu_tier = 'high'")
        + ENTRY.format(name="typo_tag", rule="tag:hihg_value"),
    )
    audiences = load_audiences(path)
    with pytest.raises(AudienceCatalogueError) as bad_rule:
        match_audiences(conn, audiences[:2], "profile")
    assert "audience 'typo_column' (audiences.yml line 7)" in str(bad_rule.value)
    assert "fine" not in str(bad_rule.value)
    with pytest.raises(
        AudienceCatalogueError, match=r"'typo_tag' \(audiences.yml line 12\): unknown tag 'hihg_value'"
    ):
        check_tag_references(audiences, {"high_value"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "audiences:\n  - name: x\n    purpose: p\n",
            r"'x' \(audiences.yml line 2\): missing description, rule, owner",
        ),
        ("audiences:\n" + ENTRY.format(name="Bad-Name", rule="true"), "lowercase letters"),
        ("audiences:\n" + ENTRY.format(name="x", rule="true") * 2, r"line 7\): already defined at line 2"),
        ("audiences:\n" + ENTRY.format(name="x", rule="true") + "    control_share: 1.5\n", "below 1"),
        ("audiences:\n" + ENTRY.format(name="x", rule="true") + "    control_share: ten\n", "not a number"),
        ("tags: []\n", "top-level list `audiences:`"),
    ],
)
def test_catalogue_errors_name_the_audience_and_line(tmp_path, text, message):
    with pytest.raises(AudienceCatalogueError, match=message):
        load_audiences(write(tmp_path, text))


def test_a_draw_is_the_first_eight_bytes_of_sha256_read_as_a_big_endian_fraction():
    expected = int(hashlib.sha256(b"perks:user-1").hexdigest()[:16], 16) / 2**64
    assert control_draws("perks", ["user-1"])[0] == expected
    assert control_draws("perks", ["user-1"])[0] != control_draws("winback", ["user-1"])[0]


@pytest.fixture(scope="module")
def draws_of_two_audiences() -> tuple[np.ndarray, np.ndarray]:
    """Hashing 100k keys takes a second or two, so the share and independence tests share one pass."""
    return control_draws("high_value_perks", SYNTHETIC_KEYS), control_draws(
        "high_value_winback", SYNTHETIC_KEYS
    )


@pytest.mark.parametrize("share", [0.05, 0.1, 0.25])
def test_control_share_is_within_one_point_on_100k_keys(draws_of_two_audiences, share):
    for draws in draws_of_two_audiences:
        realised = (draws < share).mean()
        assert abs(realised - share) <= 0.01, realised


def test_control_groups_of_different_audiences_are_independent(draws_of_two_audiences):
    first, second = (draws < 0.1 for draws in draws_of_two_audiences)
    correlation = np.corrcoef(first, second)[0, 1]
    assert abs(correlation) < 0.01, correlation
    assert abs((first & second).mean() - 0.01) < 0.002


@given(
    keys=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30, unique=True),
    audience=st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
)
def test_a_persons_assignment_depends_only_on_audience_and_key(keys, audience):
    draws = control_draws(audience, keys)
    reversed_draws = control_draws(audience, list(reversed(keys)))[::-1]
    assert np.array_equal(draws, reversed_draws)
    assert ((draws >= 0) & (draws < 1)).all()
    one_by_one = [control_draws(audience, [key])[0] for key in keys]
    assert draws.tolist() == one_by_one


def test_members_get_the_same_control_flag_on_every_run(conn, tmp_path):
    audiences = load_audiences(write(tmp_path, "audiences:\n" + ENTRY.format(name="perks", rule="true")))
    matches = pd.DataFrame(
        {
            "audience": "perks",
            "user_key": SYNTHETIC_KEYS[:2000],
            "has_marketing_consent": True,
            "has_profiling_consent": True,
        }
    )
    first = audience_members(matches, audiences)
    second = audience_members(matches.sample(frac=1, random_state=3), audiences)
    assert first.equals(second)
    expected = control_draws("perks", first["user_key"]) < 0.1
    assert first["is_control"].tolist() == expected.tolist()


def test_history_replaces_a_rerun_of_the_same_day_and_keeps_other_days():
    day_one = pd.DataFrame({"audience": ["a", "a"], "user_key": ["x", "y"], "is_control": [False, True]})
    day_two = pd.DataFrame({"audience": ["a"], "user_key": ["z"], "is_control": [False]})
    history = append_membership_history(None, day_one, date(2026, 6, 1))
    history = append_membership_history(history, day_one.iloc[:1], date(2026, 6, 2))
    history = append_membership_history(history, day_two, date(2026, 6, 2))
    assert list(zip(history["as_of_date"], history["user_key"], strict=True)) == [
        (date(2026, 6, 1), "x"),
        (date(2026, 6, 1), "y"),
        (date(2026, 6, 2), "z"),
    ]


@pytest.fixture
def export_warehouse():
    """Hand-made marts: 'a' has two mini-program openids and an official-account one; 'c' is in control."""
    connection = duckdb.connect()
    connection.execute("create schema marts")
    connection.execute(
        """
        create table marts.audience_summary as
            select 'perks' as audience, date '2026-06-30' as as_of_date;
        create table marts.audience_members as select * from (values
            ('perks', 'a', false), ('perks', 'b', false), ('perks', 'c', true), ('other', 'd', false)
        ) t(audience, user_key, is_control);
        create table marts.identity_map as select * from (values
            ('openid', 'o_mp_old', 'a', false), ('openid', 'o_mp_new', 'a', false),
            ('openid', 'o_oa', 'a', false), ('unionid', 'u_a', 'a', false), ('openid', 'o_shared', 'b', true),
            ('unionid', 'u_c', 'c', false), ('openid', 'o_mp_c', 'c', false)
        ) t(identifier_type, identifier_value, user_key, is_shared);
        create table marts.fct_events as select * from (values
            ('o_mp_old', 'miniprogram', timestamp '2026-05-01 10:00'),
            ('o_mp_new', 'miniprogram', timestamp '2026-06-01 10:00'),
            ('o_oa', 'official_account', timestamp '2026-06-20 10:00'),
            ('o_shared', 'miniprogram', timestamp '2026-06-20 10:00'),
            ('o_mp_c', 'miniprogram', timestamp '2026-06-20 10:00')
        ) t(wechat_openid, channel, occurred_at);
        """
    )
    yield connection
    connection.close()


def test_the_export_holds_treatment_only_with_the_latest_mini_program_openid(export_warehouse, tmp_path):
    path = export_audience(export_warehouse, "perks", tmp_path / "exports")
    assert path == tmp_path / "exports" / "perks_2026-06-30.csv"
    assert path.read_text(encoding="utf-8").splitlines() == [
        "user_key,openid,unionid",
        "a,o_mp_new,u_a",
        "b,,",  # a shared openid is nobody's; no unionid known
    ]
    with pytest.raises(UnknownAudienceError, match="no audience 'other'; known audiences: perks"):
        export_audience(export_warehouse, "other", tmp_path)
