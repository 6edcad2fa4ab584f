"""Identity resolution on hand-made evidence: exact partitions, keys, history, audit and metrics."""

from __future__ import annotations

import hashlib
import itertools
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_assets import identity
from ml_assets.identity import IdentityConfig, pairwise_precision_recall, resolve_identities

DAY = pd.Timestamp("2025-01-01", tz="UTC")


def key(identifier_type: str, value: str, attempt: int = 0) -> str:
    """The documented key of a person anchored at this identifier, computed independently of the module."""
    text = f"{identifier_type}:{value}" + (f"#{attempt}" if attempt else "")
    return "hx_" + hashlib.sha256(text.encode()).hexdigest()[:16]


def identifiers(*rows: tuple[str, str, int]) -> pd.DataFrame:
    """Identifier rows (type, value, first seen as a day offset from DAY)."""
    return pd.DataFrame(
        {
            "identifier_type": [row[0] for row in rows],
            "identifier_value": [row[1] for row in rows],
            "first_seen_at": [DAY + pd.Timedelta(days=row[2]) for row in rows],
        }
    )


def edges(*rows: tuple) -> pd.DataFrame:
    """Edge rows (left type, left value, right type, right value, source, record id, day offset)."""
    columns = ["left_type", "left_value", "right_type", "right_value", "source", "record_id", "observed_at"]
    frame = pd.DataFrame([list(row) for row in rows], columns=columns)
    frame["observed_at"] = [DAY + pd.Timedelta(days=offset) for offset in frame["observed_at"]]
    return frame


NO_IDENTIFIERS = identifiers()


def people(result: identity.IdentityResult) -> dict[str, set[str]]:
    """The partition as user_key -> {"type:value"}."""
    labels = result.identity_map["identifier_type"] + ":" + result.identity_map["identifier_value"]
    return {k: set(group) for k, group in labels.groupby(result.identity_map["user_key"])}


def history_rows(result: identity.IdentityResult) -> list[tuple[str, str, str]]:
    return list(
        result.key_history[["old_user_key", "new_user_key", "reason"]].itertuples(index=False, name=None)
    )


def test_chain_of_links_is_one_person_keyed_by_its_user_id():
    result = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 1),
            ("anonymous_id", "A1", "openid", "O1", "event", "e2", 2),
        ),
    )
    assert people(result) == {key("user_id", "U1"): {"user_id:U1", "anonymous_id:A1", "openid:O1"}}
    assert result.merge_audit["record_id"].to_list() == ["e1", "e2"]
    assert set(result.merge_audit["user_key"]) == {key("user_id", "U1")}
    assert result.key_history.empty and result.shared_identifiers.empty


def test_identifier_seen_once_and_never_linked_is_a_person_of_its_own():
    result = resolve_identities(identifiers(("phone", "P1", 0)), edges())
    assert people(result) == {key("phone", "P1"): {"phone:P1"}}
    assert result.identity_map["is_shared"].to_list() == [False]
    assert result.merge_audit.empty


def test_late_edge_merges_two_people_and_the_earliest_seen_key_survives():
    seen = identifiers(
        ("user_id", "U1", 60), ("anonymous_id", "A1", 60), ("openid", "O2", 0), ("anonymous_id", "A2", 0)
    )
    day_one = edges(
        ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 60),
        ("openid", "O2", "anonymous_id", "A2", "event", "e2", 1),
    )
    first = resolve_identities(seen, day_one)
    assert set(people(first)) == {key("user_id", "U1"), key("openid", "O2")}
    late = pd.concat(
        [day_one, edges(("anonymous_id", "A2", "user_id", "U1", "alias", "m1", 90))], ignore_index=True
    )
    second = resolve_identities(seen, late, first.identity_map)
    assert people(second) == {
        key("openid", "O2"): {"user_id:U1", "anonymous_id:A1", "openid:O2", "anonymous_id:A2"}
    }
    assert history_rows(second) == [(key("user_id", "U1"), key("openid", "O2"), "merged")]
    assert second.key_history["changed_at"].to_list() == [DAY + pd.Timedelta(days=90)]


def test_merge_of_people_seen_at_the_same_time_keeps_the_smallest_key():
    seen = identifiers(("user_id", "U1", 5), ("openid", "O2", 5))
    first = resolve_identities(seen, edges())
    run_at = pd.Timestamp("2025-06-30 12:00", tz="UTC")
    second = resolve_identities(
        seen, edges(("user_id", "U1", "openid", "O2", "event", "e1", 7)), first.identity_map, run_at=run_at
    )
    survivor, loser = sorted([key("user_id", "U1"), key("openid", "O2")])
    assert set(people(second)) == {survivor}
    assert history_rows(second) == [(loser, survivor, "merged")]
    assert second.key_history["changed_at"].to_list() == [run_at]


def test_device_shared_by_two_user_ids_is_kept_apart_and_listed():
    result = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("user_id", "U1", "anonymous_id", "A", "event", "e1", 1),
            ("user_id", "U2", "anonymous_id", "A", "event", "e2", 2),
            ("user_id", "U1", "openid", "O1", "event", "e3", 3),
            ("anonymous_id", "A", "openid", "O3", "event", "e4", 4),
        ),
    )
    assert people(result) == {
        key("user_id", "U1"): {"user_id:U1", "openid:O1"},
        key("user_id", "U2"): {"user_id:U2"},
        key("anonymous_id", "A"): {"anonymous_id:A"},
        key("openid", "O3"): {"openid:O3"},  # reachable only through the shared device: a guest of its own
    }
    assert result.shared_identifiers.to_dict("records") == [
        {
            "identifier_type": "anonymous_id",
            "identifier_value": "A",
            "degree": 2,
            "reason": "multiple_user_ids",
            "user_key": key("anonymous_id", "A"),
        }
    ]
    flagged = result.identity_map.set_index("identifier_value")["is_shared"]
    assert flagged.to_dict() == {"U1": False, "U2": False, "O3": False, "O1": False, "A": True}


def test_user_ids_joined_through_a_chain_split_at_the_middle():
    odd = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("user_id", "U1", "anonymous_id", "A", "event", "e1", 1),
            ("anonymous_id", "A", "openid", "B", "event", "e2", 1),
            ("openid", "B", "user_id", "U2", "event", "e3", 1),
        ),
    )
    assert sorted(map(sorted, people(odd).values())) == [
        ["anonymous_id:A", "user_id:U1"],
        ["openid:B", "user_id:U2"],
    ]
    assert odd.shared_identifiers.empty
    even = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("user_id", "U1", "anonymous_id", "A", "event", "e1", 1),
            ("anonymous_id", "A", "unionid", "M", "event", "e2", 1),
            ("unionid", "M", "openid", "B", "event", "e3", 1),
            ("openid", "B", "user_id", "U2", "event", "e4", 1),
        ),
    )
    assert even.shared_identifiers[["identifier_value", "degree"]].values.tolist() == [["M", 2]]
    assert len(people(even)) == 3


@pytest.mark.parametrize(("guests", "phone_is_shared"), [(10, False), (11, True)])
def test_store_phone_typed_in_by_many_guests_merges_nobody(guests, phone_is_shared):
    guest_links = [
        row
        for n in range(guests)
        for row in [
            ("anonymous_id", f"A{n:02d}", "phone", "STORE", "identify", f"i{n}", 1),
            ("anonymous_id", f"A{n:02d}", "openid", f"O{n:02d}", "event", f"e{n}", 1),
        ]
    ]
    guest_orders = [("user_id", "", "phone", "STORE", "order", f"o{n}", 2) for n in range(50)]
    result = resolve_identities(NO_IDENTIFIERS, edges(*guest_links, *guest_orders))
    assert "" not in set(result.identity_map["identifier_value"])
    if phone_is_shared:
        assert result.shared_identifiers[["identifier_value", "degree", "reason"]].values.tolist() == [
            ["STORE", guests, "too_many_neighbors"]
        ]
        assert len(people(result)) == guests + 1
        assert people(result)[key("openid", "O00")] == {"openid:O00", "anonymous_id:A00"}
    else:
        assert result.shared_identifiers.empty
        assert people(result) == {
            key("phone", "STORE"): set(
                result.identity_map["identifier_type"] + ":" + result.identity_map["identifier_value"]
            )
        }


def test_alias_joins_the_previous_anonymous_id_but_never_two_user_ids():
    result = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("anonymous_id", "A0", "user_id", "U1", "alias", "m1", 3),
            ("user_id", "U1", "user_id", "U9", "alias", "m2", 4),
        ),
    )
    assert people(result) == {
        key("user_id", "U1"): {"anonymous_id:A0", "user_id:U1"},
        key("user_id", "U9"): {"user_id:U9"},
    }
    assert result.merge_audit[["source", "record_id"]].values.tolist() == [["alias", "m1"]]
    assert result.shared_identifiers.empty


def test_two_user_ids_merge_when_the_bound_allows_it_but_three_split():
    two = edges(
        ("user_id", "U1", "phone", "P", "crm_user", "c1", 1),
        ("user_id", "U2", "phone", "P", "crm_user", "c2", 1),
    )
    allowed = resolve_identities(NO_IDENTIFIERS, two, config=IdentityConfig(max_user_ids_per_person=2))
    assert people(allowed) == {key("user_id", "U1"): {"user_id:U1", "user_id:U2", "phone:P"}}
    three = pd.concat([two, edges(("user_id", "U3", "phone", "P", "crm_user", "c3", 1))], ignore_index=True)
    too_many = resolve_identities(NO_IDENTIFIERS, three, config=IdentityConfig(max_user_ids_per_person=2))
    assert too_many.shared_identifiers[["identifier_value", "degree"]].values.tolist() == [["P", 3]]
    assert len(people(too_many)) == 4


def test_keys_are_stable_across_two_runs_on_unchanged_data():
    evidence = edges(
        ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 1),
        ("openid", "O2", "unionid", "N2", "event", "e2", 2),
        ("user_id", "U3", "anonymous_id", "A1", "event", "e3", 3),
    )
    first = resolve_identities(NO_IDENTIFIERS, evidence)
    second = resolve_identities(NO_IDENTIFIERS, evidence, first.identity_map)
    pd.testing.assert_frame_equal(first.identity_map, second.identity_map)
    assert second.key_history.empty


def test_new_edge_leaves_unrelated_keys_alone():
    day_one = edges(
        ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 1),
        ("openid", "O2", "anonymous_id", "A2", "event", "e2", 2),
        ("user_id", "U3", "phone", "P3", "crm_user", "c3", 3),
    )
    first = resolve_identities(NO_IDENTIFIERS, day_one)
    day_two = pd.concat([day_one, edges(("user_id", "U1", "anonymous_id", "A2", "event", "e9", 9))])
    second = resolve_identities(NO_IDENTIFIERS, day_two, first.identity_map)
    before = first.identity_map.set_index("identifier_value")["user_key"]
    after = second.identity_map.set_index("identifier_value")["user_key"]
    assert after["U3"] == after["P3"] == before["U3"] == key("user_id", "U3")
    assert after["U1"] == after["A1"] == after["O2"] == after["A2"] == key("user_id", "U1")


def test_split_keeps_the_key_with_the_anchor_and_logs_the_other_parts():
    day_one = edges(
        ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 1),
        ("anonymous_id", "A1", "openid", "O1", "event", "e2", 1),
    )
    first = resolve_identities(NO_IDENTIFIERS, day_one)
    day_two = pd.concat([day_one, edges(("user_id", "U2", "anonymous_id", "A1", "event", "e3", 5))])
    second = resolve_identities(NO_IDENTIFIERS, day_two, first.identity_map)
    assert people(second) == {
        key("user_id", "U1"): {"user_id:U1"},
        key("user_id", "U2"): {"user_id:U2"},
        key("anonymous_id", "A1"): {"anonymous_id:A1"},
        key("openid", "O1"): {"openid:O1"},
    }
    assert history_rows(second) == sorted(
        [
            (key("user_id", "U1"), key("anonymous_id", "A1"), "split"),
            (key("user_id", "U1"), key("openid", "O1"), "split"),
        ]
    )


def test_split_off_anchor_whose_hash_is_still_in_use_gets_the_next_key():
    guest = edges(("openid", "O1", "anonymous_id", "A1", "event", "e1", 1))
    first = resolve_identities(NO_IDENTIFIERS, guest)
    logged_in = pd.concat([guest, edges(("user_id", "U1", "anonymous_id", "A1", "event", "e2", 2))])
    second = resolve_identities(NO_IDENTIFIERS, logged_in, first.identity_map)
    assert set(people(second)) == {key("openid", "O1")}  # the guest's key carries on after login
    shared_device = pd.concat([logged_in, edges(("user_id", "U2", "anonymous_id", "A1", "event", "e3", 3))])
    third = resolve_identities(NO_IDENTIFIERS, shared_device, second.identity_map)
    assert people(third)[key("openid", "O1")] == {"user_id:U1"}
    assert people(third)[key("openid", "O1", attempt=1)] == {"openid:O1"}


def test_key_of_an_erased_person_is_never_handed_to_someone_else():
    previous = pd.DataFrame(
        {"identifier_type": ["user_id"], "identifier_value": ["ERASED"], "user_key": [key("phone", "P1")]}
    )
    result = resolve_identities(identifiers(("phone", "P1", 0)), edges(), previous)
    assert people(result) == {key("phone", "P1", attempt=1): {"phone:P1"}}
    assert result.key_history.empty


def test_each_identifier_gets_one_row_however_often_it_is_mentioned():
    result = resolve_identities(
        identifiers(("user_id", "U1", 3), ("user_id", "U1", 1), ("anonymous_id", "A1", 2)),
        edges(
            ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 4),
            ("anonymous_id", "A1", "user_id", "U1", "event", "e2", 5),
        ),
    )
    assert result.identity_map[["identifier_type", "identifier_value"]].values.tolist() == [
        ["user_id", "U1"],
        ["anonymous_id", "A1"],
    ]
    assert result.merge_audit["record_id"].to_list() == ["e1"]


def test_merge_audit_is_the_earliest_evidence_spanning_forest():
    result = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("user_id", "U1", "openid", "O1", "identify", "late", 30),
            ("user_id", "U1", "anonymous_id", "A1", "event", "e-later", 20),
            ("anonymous_id", "A1", "openid", "O1", "event", "e-mid", 10),
            ("anonymous_id", "A1", "user_id", "U1", "event", "e-first", 5),
            ("phone", "P9", "openid", "O9", "event", "other", 1),
        ),
    )
    assert result.merge_audit[["left_value", "right_value", "record_id"]].values.tolist() == [
        ["P9", "O9", "other"],
        ["A1", "U1", "e-first"],
        ["A1", "O1", "e-mid"],
    ]


def _operator_query() -> str:
    """The SQL the module docstring tells operators to run, so the documentation is what gets tested."""
    block = re.search(r"```sql\n(.*?)```", identity.__doc__, re.DOTALL)
    assert block is not None
    return block.group(1)


def test_documented_operator_query_explains_why_two_identifiers_are_one_person():
    result = resolve_identities(
        NO_IDENTIFIERS,
        edges(
            ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 1),
            ("anonymous_id", "A1", "openid", "O1", "event", "e2", 2),
            ("openid", "O1", "unionid", "N1", "event", "e3", 3),
            ("user_id", "U2", "phone", "P2", "crm_user", "c1", 4),
        ),
    )
    connection = duckdb.connect()
    connection.register("identity_merge_audit", result.merge_audit)
    proof = connection.execute(_operator_query(), ["unionid", "N1", "anonymous_id", "A1"]).df()
    assert proof[["from_value", "to_value", "record_id"]].values.tolist() == [
        ["N1", "O1", "e3"],
        ["O1", "A1", "e2"],
    ]
    assert connection.execute(_operator_query(), ["user_id", "U1", "phone", "P2"]).df().empty


def test_metrics_summarise_the_partition():
    result = resolve_identities(
        identifiers(("user_id", "U4", 0)),
        edges(
            ("user_id", "U1", "anonymous_id", "A1", "event", "e1", 1),
            ("user_id", "U1", "openid", "O1", "event", "e2", 1),
            ("user_id", "U2", "anonymous_id", "A1", "event", "e3", 1),
            ("user_id", "U2", "phone", "P2", "crm_user", "c1", 1),
            ("user_id", "U3", "unionid", "N3", "crm_user", "c2", 1),
            ("unionid", "N3", "openid", "O3", "event", "e4", 1),
            ("openid", "O3", "anonymous_id", "A3", "event", "e5", 1),
        ),
        config=IdentityConfig(max_component_size=3),
    )
    # persons: {U1,O1} {U2,P2} {A1} {U3,N3,O3,A3} {U4} -> sizes 1,1,2,2,4
    assert result.metrics == {
        "persons": 5,
        "identifiers": 10,
        "identifiers_per_person": {"p50": 2, "p90": 4, "p99": 4, "max": 4},
        "largest_component_size": 4,
        "largest_component_alert": True,
        "shared_identifiers_by_type": {
            "user_id": 0,
            "unionid": 0,
            "phone": 0,
            "openid": 0,
            "anonymous_id": 1,
        },
    }


def test_unknown_identifier_type_and_duplicated_previous_map_are_rejected():
    with pytest.raises(ValueError, match="email"):
        resolve_identities(NO_IDENTIFIERS, edges(("user_id", "U1", "email", "x@y", "crm_user", "c1", 1)))
    duplicated = pd.DataFrame(
        {"identifier_type": ["user_id"] * 2, "identifier_value": ["U1"] * 2, "user_key": ["hx_a", "hx_b"]}
    )
    with pytest.raises(ValueError, match="several rows"):
        resolve_identities(identifiers(("user_id", "U1", 0)), edges(), duplicated)


TYPES = ["user_id", "unionid", "phone", "openid", "anonymous_id"]
identifier_strategy = st.tuples(st.sampled_from(TYPES), st.sampled_from(["a", "b", "c", "d"]))
evidence_strategy = st.lists(
    st.tuples(
        identifier_strategy, identifier_strategy, st.integers(0, 3), st.sampled_from(["event", "alias"])
    ),
    min_size=1,
    max_size=25,
)


def _evidence_frame(rows) -> pd.DataFrame:
    return edges(
        *[
            (left[0], left[1], right[0], right[1], source, f"r{n}", day)
            for n, (left, right, day, source) in enumerate(rows)
        ]
    )


def _comparable(result: identity.IdentityResult) -> tuple:
    return (
        result.identity_map.to_dict("records"),
        result.shared_identifiers.to_dict("records"),
        result.key_history.to_dict("records"),
        result.merge_audit.to_dict("records"),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=evidence_strategy, seed=st.integers(0, 2**32 - 1), split=st.integers(0, 25))
def test_result_does_not_depend_on_edge_order(rows, seed, split):
    evidence = _evidence_frame(rows)
    config = IdentityConfig(max_neighbors_by_type={"phone": 2, "anonymous_id": 3})
    previous = resolve_identities(NO_IDENTIFIERS, evidence.iloc[:split], config=config).identity_map
    shuffled = evidence.sample(frac=1.0, random_state=seed)
    reversed_sides = shuffled.rename(
        columns={
            "left_type": "right_type",
            "left_value": "right_value",
            "right_type": "left_type",
            "right_value": "left_value",
        }
    )
    reference = resolve_identities(NO_IDENTIFIERS, evidence, previous, config)
    for variant in (shuffled, reversed_sides):
        result = resolve_identities(
            NO_IDENTIFIERS, variant, previous.sample(frac=1.0, random_state=seed), config
        )
        assert people(result) == people(reference)
        assert _comparable(result)[:3] == _comparable(reference)[:3]
    assert _comparable(resolve_identities(NO_IDENTIFIERS, shuffled, previous, config)) == _comparable(
        reference
    )
    user_ids_per_person = reference.identity_map.groupby("user_key")["identifier_type"].agg(
        lambda types: (types == "user_id").sum()
    )
    assert user_ids_per_person.max() <= 1
    shared_keys = reference.shared_identifiers["user_key"]
    assert (reference.identity_map["user_key"].value_counts()[shared_keys] == 1).all()
    assert len(reference.merge_audit) == len(reference.identity_map) - reference.metrics["persons"]


def test_pairwise_precision_recall_from_contingency_counts():
    predicted = pd.DataFrame(
        {
            "identifier_type": "anonymous_id",
            "identifier_value": list("abcd"),
            "user_key": ["k1", "k1", "k1", "k2"],
        }
    )
    truth = pd.DataFrame(
        {"identifier_type": "anonymous_id", "identifier_value": list("dcba"), "person_id": [2, 2, 1, 1]}
    )
    # predicted pairs ab ac bc, true pairs ab cd, both: ab
    assert pairwise_precision_recall(predicted, truth) == (1 / 3, 1 / 2)
    singletons = predicted.assign(user_key=list("wxyz"))
    assert pairwise_precision_recall(singletons, truth) == (1.0, 0.0)
    with pytest.raises(ValueError, match="1 identifiers"):
        pairwise_precision_recall(predicted, truth.iloc[:3])


@given(labels=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=30))
def test_pairwise_precision_recall_matches_counting_every_pair(labels):
    values = [f"v{n}" for n in range(len(labels))]
    predicted = pd.DataFrame(
        {"identifier_type": "phone", "identifier_value": values, "user_key": [p for p, _ in labels]}
    )
    truth = pd.DataFrame(
        {"identifier_type": "phone", "identifier_value": values, "person_id": [t for _, t in labels]}
    )
    pairs = list(itertools.combinations(labels, 2))
    predicted_pairs = sum(a[0] == b[0] for a, b in pairs)
    true_pairs = sum(a[1] == b[1] for a, b in pairs)
    both = sum(a == b for a, b in pairs)
    precision, recall = pairwise_precision_recall(predicted, truth)
    assert precision == pytest.approx(both / predicted_pairs if predicted_pairs else 1.0)
    assert recall == pytest.approx(both / true_pairs if true_pairs else 1.0)
    assert np.isfinite([precision, recall]).all()
