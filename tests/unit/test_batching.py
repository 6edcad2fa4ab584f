"""Memory-bounded ML assets: batches read every row once, and batched scoring equals one-shot scoring exactly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets import rfm
from ml_assets.clustering import (
    ClusteringConfig,
    assign_clusters,
    assign_with_previous,
    choose_model,
    with_sizes,
)
from ml_assets.clv import rfm_summary
from ml_assets.lifecycle import append_history, classify_lifecycle, stage_transitions
from orchestration.ml import (
    append_history_in_warehouse,
    transitions_in_warehouse,
    warehouse_rfm_population,
)
from orchestration.resources import batch_writer, iter_frames, whole_groups
from tests.unit.test_clustering import FEATURES, planted_population


def chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[start : start + size].reset_index(drop=True) for start in range(0, len(frame), size)]


# --- reading and writing in batches ---------------------------------------------------------------


@pytest.fixture
def conn():
    with duckdb.connect() as connection:
        connection.execute(
            "create table numbers as select range as n, 'k' || range as key,"
            " case when range % 3 = 0 then null else range end as maybe, range % 2 = 0 as even from range(100)"
        )
        yield connection


@pytest.mark.parametrize("batch_size", [1, 7, 99, 100, 101, 10_000])
def test_iter_frames_yields_every_row_exactly_once(conn, batch_size):
    frames = list(iter_frames(conn, "select * from numbers order by n", batch_size))
    assert all(0 < len(frame) <= batch_size for frame in frames)
    assert len(frames) >= -(-100 // batch_size)
    assert pd.concat(frames)["n"].tolist() == list(range(100))


def test_iter_frames_gives_every_batch_the_same_nullable_dtypes(conn):
    frames = list(iter_frames(conn, "select * from numbers where n >= ? order by n", 2, params=[2]))
    # The first batch (2, 3) has a null in `maybe`, the second (4, 5) none: both must be Int64.
    assert {str(frame["maybe"].dtype) for frame in frames} == {"Int64"}
    assert {str(frame["even"].dtype) for frame in frames} == {"boolean"}
    assert frames[0]["maybe"].isna().tolist() == [False, True]


def test_iter_frames_yields_one_empty_frame_with_the_columns_when_nothing_matches(conn):
    frames = list(iter_frames(conn, "select n, key from numbers where n < 0", 10))
    assert len(frames) == 1 and frames[0].empty
    assert list(frames[0].columns) == ["n", "key"]


def test_iter_frames_refuses_a_batch_size_below_one(conn):
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_frames(conn, "select * from numbers", 0))


def test_batch_writer_writes_all_batches_and_replaces_the_old_table(conn):
    conn.execute("create schema ml")
    conn.execute("create table ml.copy as select 'old' as key")
    with batch_writer(conn) as writer:
        for frame in iter_frames(conn, "select * from numbers order by n", 30):
            writer.append("ml.copy", frame)
    written = conn.execute("select * from ml.copy order by n").df()
    assert written["n"].tolist() == list(range(100)) and written["maybe"].isna().sum() == 34
    columns = "select column_name, data_type from duckdb_columns() where table_name = 'copy'"
    types = dict(conn.execute(columns).fetchall())
    assert types == {"n": "BIGINT", "key": "VARCHAR", "maybe": "BIGINT", "even": "BOOLEAN"}


def test_batch_writer_leaves_every_table_untouched_when_a_batch_fails(conn):
    conn.execute("create schema ml")
    conn.execute("create table ml.copy as select 'old' as key")
    with pytest.raises(RuntimeError, match="third batch"), batch_writer(conn) as writer:
        for number, frame in enumerate(iter_frames(conn, "select * from numbers", 30)):
            if number == 2:
                raise RuntimeError("third batch")
            writer.append("ml.copy", frame)
            writer.append("ml.other", frame)
    assert conn.execute("select * from ml.copy").fetchall() == [("old",)]
    assert conn.execute("select count(*) from duckdb_tables() where table_name = 'other'").fetchall() == [(0,)]


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=30),
    batch_size=st.integers(min_value=1, max_value=10),
)
@settings(max_examples=60, deadline=None)
def test_whole_groups_never_split_a_key_and_keep_every_row(sizes, batch_size):
    keys = [f"c{index:03d}" for index, size in enumerate(sizes) for _ in range(size)]
    rows = pd.DataFrame({"customer_id": keys, "row": range(len(keys))})
    frames = list(whole_groups(chunks(rows, batch_size), "customer_id"))
    assert pd.concat(frames)["row"].tolist() == list(range(len(keys)))
    seen: set[str] = set()
    for frame in frames:
        in_frame = set(frame["customer_id"])
        assert not in_frame & seen
        seen |= in_frame


def test_whole_groups_of_nothing_is_nothing():
    empty = pd.DataFrame({"customer_id": pd.Series([], dtype="str")})
    assert list(whole_groups([empty], "customer_id")) == []


# --- lifecycle ------------------------------------------------------------------------------------


def random_lifecycle_features(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    orders = rng.integers(0, 7, n)
    first_seen = rng.integers(0, 500, n)
    first_paid = np.where(orders > 0, rng.integers(0, 400, n), -1)
    last_paid = np.where(orders > 0, (first_paid * rng.random(n)).astype(int), -1)
    frame = pd.DataFrame(
        {
            "user_key": [f"u{i:04d}" for i in range(n)],
            "days_since_first_seen": first_seen,
            "days_since_last_activity": rng.integers(0, 300, n),
            "days_since_first_paid": first_paid,
            "days_since_last_paid": last_paid,
            "paid_orders": orders,
            "median_order_interval_days": np.where(orders > 1, rng.integers(1, 60, n), -1).astype(float),
        }
    )
    for column in frame.columns[1:]:
        frame[column] = frame[column].where(frame[column] >= 0)
    return frame.astype({c: "Int64" for c in frame.columns[1:-1]})


def test_batched_lifecycle_equals_one_shot():
    features = random_lifecycle_features(500, seed=3)
    one_shot = classify_lifecycle(features)
    batched = pd.concat([classify_lifecycle(batch) for batch in chunks(features, 37)], ignore_index=True)
    pd.testing.assert_frame_equal(batched, one_shot)
    assert one_shot["lifecycle_stage"].nunique() == 6


def test_history_and_transitions_in_the_warehouse_equal_the_pandas_ones():
    day_one, day_two = dt.date(2026, 6, 1), dt.date(2026, 6, 8)
    first = pd.DataFrame({"user_key": ["a", "b", "c", "d"], "lifecycle_stage": ["new", "growing", "mature", "new"]})
    second = pd.DataFrame({"user_key": ["b", "c", "d", "e"], "lifecycle_stage": ["mature", "declining", "new", "new"]})
    history = append_history(append_history(None, first, day_one), second, day_two)
    with duckdb.connect() as conn:
        conn.execute("create schema ml")
        for stages, day in ((first, day_one), (second, day_two), (second, day_two)):  # the re-run replaces
            conn.register("stages", stages)
            conn.execute("create or replace table ml.user_lifecycle as select * from stages")
            conn.unregister("stages")
            append_history_in_warehouse(conn, day)
        stored = conn.execute("select * from ml.user_lifecycle_history order by as_of_date, user_key").df()
        transitions = transitions_in_warehouse(conn, day_one, day_two)
    assert stored["user_key"].tolist() == history["user_key"].tolist()
    assert stored["lifecycle_stage"].tolist() == history["lifecycle_stage"].tolist()
    assert stored["as_of_date"].dt.date.tolist() == history["as_of_date"].tolist()
    pd.testing.assert_frame_equal(transitions, stage_transitions(history, day_one, day_two))
    pairs = zip(transitions["from_stage"], transitions["to_stage"], strict=True)
    assert dict(zip(pairs, transitions["users"], strict=True)) == {
        ("none", "new"): 1,
        ("new", "new"): 1,
        ("new", "none"): 1,
        ("growing", "mature"): 1,
        ("mature", "declining"): 1,
    }


# --- RFM ------------------------------------------------------------------------------------------


def rfm_customers(rows: list[tuple[int, int, int]], money: str) -> pd.DataFrame:
    """People from (days, orders, cents); non-buyers have null days and money, as the warehouse gives them."""

    def amount(cents: int):
        if money == "decimal":
            return Decimal(cents) / 100
        return float(cents) if money == "whole" else cents / 100

    return pd.DataFrame(
        {
            "user_key": [f"u{i:03d}" for i in range(len(rows))],
            "recency_days": pd.array([days if orders else None for days, orders, _ in rows], dtype="Int64"),
            "frequency": pd.array([orders for _, orders, _ in rows], dtype="Int64"),
            "monetary": [amount(cents) if orders else None for _, orders, cents in rows],
        }
    )


PEOPLE_ROWS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40),
        st.integers(min_value=0, max_value=6),
        st.integers(min_value=0, max_value=3_000),
    ),
    min_size=1,
    max_size=90,
)


@given(rows=PEOPLE_ROWS, money=st.sampled_from(["float", "whole", "decimal"]), batch_size=st.integers(1, 40))
@settings(max_examples=80, deadline=None)
def test_batched_rfm_with_population_cutoffs_equals_one_shot(rows, money, batch_size):
    customers = rfm_customers(rows, money)
    one_shot = rfm.score_rfm(customers)
    population = rfm.rfm_population(customers)
    batched = pd.concat([rfm.score_rfm(b, population) for b in chunks(customers, batch_size)], ignore_index=True)
    pd.testing.assert_frame_equal(batched, one_shot)
    totals = sum(rfm.segment_totals(b) for b in chunks(one_shot, batch_size))
    summary = rfm.summarise_segments(totals)
    expected = rfm.segment_summary(one_shot)
    pd.testing.assert_frame_equal(summary.drop(columns="revenue"), expected.drop(columns="revenue"))
    assert np.allclose(summary["revenue"], expected["revenue"])


@given(rows=PEOPLE_ROWS, money=st.sampled_from(["float", "whole"]), batch_size=st.integers(1, 40))
@settings(max_examples=60, deadline=None)
def test_warehouse_cutoffs_equal_the_pandas_ones(rows, money, batch_size):
    customers = rfm_customers(rows, money)
    with duckdb.connect() as conn:
        conn.register("people", customers)
        in_sql = warehouse_rfm_population(conn, "select * from people", batch_size)
    in_pandas = rfm.rfm_population(customers)
    for measure in ("recency", "frequency", "monetary"):
        sql, pandas = getattr(in_sql, measure), getattr(in_pandas, measure)
        assert sql.bins == pandas.bins and sql.count == pandas.count
        assert [float(v) for v in sql.upper_values] == [float(v) for v in pandas.upper_values]
        assert sql.total == pandas.total, measure
        if pandas.count:  # with no buyers at all the total is 0 and its type never used
            assert type(sql.total) is type(pandas.total), measure


def test_cutoffs_refuse_a_value_the_population_never_had():
    population = rfm.rfm_population(rfm_customers([(1, 1, 100), (5, 2, 300)], "float"))
    outsider = rfm_customers([(1, 9, 100)], "float")
    with pytest.raises(ValueError, match="above every bin"):
        rfm.score_rfm(outsider, population)


# --- clusters -------------------------------------------------------------------------------------


def test_clusters_fitted_on_a_sample_and_assigned_in_batches_equal_one_shot_assignment():
    people = planted_population(per_persona=60, seed=5)
    config = ClusteringConfig(fit_sample_size=150, selection_sample_size=100, silhouette_sample_size=100)
    sample = people.sample(150, random_state=1)
    model, diagnostics = choose_model(None, sample, FEATURES, config)
    counts = pd.Series(dtype="int64")
    parts = []
    for batch in chunks(people, 37):
        assigned = assign_clusters(model, batch, config.batch_size)
        parts.append(assigned)
        counts = counts.add(assigned["cluster_id"].value_counts(), fill_value=0)
    one_shot = assign_clusters(model, people)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), one_shot)
    sizes = with_sizes(diagnostics, model, counts.astype("int64").to_dict())["sizes"]
    assert sizes == {int(k): int(v) for k, v in one_shot["cluster_id"].value_counts().sort_index().items()}
    # The model learnt its imputation from the sample only, and applies it unchanged to everyone.
    assert model.imputation_values["avg_order_value"] == float(sample["avg_order_value"].median())


def test_choose_model_then_assignment_is_assign_with_previous():
    people = planted_population(per_persona=40, seed=6)
    config = ClusteringConfig(selection_sample_size=200, silhouette_sample_size=200, fit_sample_size=240)
    model, assignments, diagnostics = assign_with_previous(None, people, FEATURES, config)
    chosen, chosen_diagnostics = choose_model(None, people, FEATURES, config)
    assert chosen == model
    pd.testing.assert_frame_equal(assign_clusters(chosen, people), assignments)
    sizes = assignments["cluster_id"].value_counts().to_dict()
    assert with_sizes(chosen_diagnostics, chosen, sizes) == diagnostics


# --- CLV ------------------------------------------------------------------------------------------


def test_clv_summary_of_whole_customer_batches_equals_the_one_shot_summary():
    rng = np.random.default_rng(2)
    customers = [f"c{i:03d}" for i in range(80)]
    rows = pd.DataFrame(
        {
            "customer_id": rng.choice(customers, 400),
            "occurred_at": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 150, 400), unit="D"),
            "amount": rng.integers(100, 9_000, 400) / 100,
        }
    ).sort_values(["customer_id", "occurred_at", "amount"], ignore_index=True)
    as_of = dt.date(2026, 6, 30)
    one_shot = rfm_summary(rows, as_of)
    batches = list(whole_groups(chunks(rows, 13), "customer_id"))
    assert len(batches) > 10
    batched = pd.concat([rfm_summary(batch, as_of) for batch in batches], ignore_index=True)
    pd.testing.assert_frame_equal(batched, one_shot)
