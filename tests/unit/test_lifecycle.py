"""Lifecycle stages: hand-made people with hand-computed stages, history, transitions and scoring."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets import lifecycle
from ml_assets.lifecycle import LifecycleConfig

COLUMNS = list(lifecycle.FEATURE_COLUMNS)
NA = None

# (user_key, since first seen, since last activity, since first paid, since last paid, paid orders,
#  median interval) -> stage under the default config (new 30, mature 4, declining 60 / 3x, churn 180)
PEOPLE = [
    (("prospect", 10, 2, NA, NA, 0, NA), "prospect"),
    (("prospect_179_idle", 300, 179, NA, NA, 0, NA), "prospect"),
    (("prospect_180_idle", 400, 180, NA, NA, 0, NA), "churned"),
    (("never_active_200", 200, NA, NA, NA, 0, NA), "churned"),
    (("buyer_180_idle", 500, 180, 400, 180, 5, 20.0), "churned"),
    (("buyer_179_idle", 400, 179, 300, 179, 3, 30.0), "declining"),
    (("repeat_first_paid_29", 40, 1, 29, 5, 2, 24.0), "new"),
    (("repeat_first_paid_30", 40, 1, 30, 3, 2, 27.0), "growing"),
    (("single_30", 35, 30, 30, 30, 1, NA), "new"),
    (("single_60", 80, 60, 60, 60, 1, NA), "new"),
    (("single_61", 80, 2, 61, 61, 1, NA), "declining"),
    (("mature", 300, 4, 200, 10, 6, 15.0), "mature"),
    (("mature_at_3x_interval", 400, 5, 300, 75, 5, 25.0), "mature"),
    (("declining_past_3x_interval", 400, 5, 300, 76, 5, 25.0), "declining"),
    (("mature_at_min_days", 200, 60, 150, 60, 4, 10.0), "mature"),
    (("declining_past_min_days", 200, 61, 150, 61, 4, 10.0), "declining"),
    (("growing_3_orders", 150, 8, 100, 40, 3, 30.0), "growing"),
    (("browsing_lapsed_buyer", 200, 3, 150, 100, 2, 20.0), "declining"),
]


def _features(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in COLUMNS[1:6]:
        frame[column] = frame[column].astype("Int64")
    frame["median_order_interval_days"] = frame["median_order_interval_days"].astype("Float64")
    return frame


def _stages(frame: pd.DataFrame, config: LifecycleConfig | None = None) -> dict[str, str]:
    classified = lifecycle.classify_lifecycle(frame, config)
    return dict(zip(classified["user_key"], classified["lifecycle_stage"], strict=True))


@pytest.fixture
def people() -> pd.DataFrame:
    return _features([row for row, _ in PEOPLE])


def test_hand_made_people_get_hand_computed_stages(people):
    assert _stages(people) == {row[0]: stage for row, stage in PEOPLE}


def test_output_shape_and_reasons(people):
    classified = lifecycle.classify_lifecycle(people)
    assert list(classified.columns) == ["user_key", "lifecycle_stage", "reason"]
    assert classified["user_key"].tolist() == people["user_key"].tolist()
    reasons = dict(zip(classified["user_key"], classified["reason"], strict=True))
    assert reasons["prospect_180_idle"] == "no activity for 180 days (churned from 180)"
    assert reasons["repeat_first_paid_29"] == "first paid 29 days ago (new for 30 days)"
    assert reasons["declining_past_3x_interval"] == (
        "last paid 76 days ago; lapse after 75 days = 3 x median interval 25"
    )
    assert reasons["declining_past_min_days"] == "last paid 61 days ago; lapse after 60 days"
    assert reasons["single_60"] == "one paid order 60 days ago, no repeat yet; lapse after 60 days"
    assert reasons["growing_3_orders"] == "3 paid orders, building up to 4; last 40 days ago"
    assert reasons["mature"] == "6 paid orders (mature from 4), last 10 days ago"


@pytest.mark.parametrize(
    ("change", "moved"),
    [
        ({"new_days": 45}, {"repeat_first_paid_30": "new"}),
        ({"new_days": 29}, {"repeat_first_paid_29": "growing"}),
        (
            {"churn_days": 200},
            {"prospect_180_idle": "prospect", "buyer_180_idle": "declining"},
        ),
        ({"churn_days": 179}, {"prospect_179_idle": "churned", "buyer_179_idle": "churned"}),
        ({"mature_min_orders": 3}, {"growing_3_orders": "mature"}),
        ({"mature_min_orders": 6}, {"mature_at_3x_interval": "growing", "mature_at_min_days": "growing"}),
        ({"declining_interval_multiple": 2.0}, {"mature_at_3x_interval": "declining"}),
        ({"declining_interval_multiple": 4.0}, {"declining_past_3x_interval": "mature"}),
        (
            {"declining_min_days": 100},
            {
                "single_61": "new",
                "declining_past_min_days": "mature",
                "declining_past_3x_interval": "mature",
                "browsing_lapsed_buyer": "growing",
            },
        ),
    ],
)
def test_config_changes_move_people_as_expected(people, change, moved):
    baseline = _stages(people)
    changed = _stages(people, dataclasses.replace(LifecycleConfig(), **change))
    assert {key: stage for key, stage in changed.items() if baseline[key] != stage} == moved


def test_config_is_frozen_and_validated():
    config = LifecycleConfig()
    assert (config.new_days, config.mature_min_orders, config.churn_days) == (30, 4, 180)
    assert (config.declining_min_days, config.declining_interval_multiple) == (60, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.new_days = 10  # type: ignore[misc]
    with pytest.raises(ValueError, match="mature_min_orders"):
        LifecycleConfig(mature_min_orders=1)
    with pytest.raises(ValueError, match="positive"):
        LifecycleConfig(declining_interval_multiple=0)


def test_invalid_features_are_refused(people):
    with pytest.raises(ValueError, match="duplicate"):
        lifecycle.classify_lifecycle(pd.concat([people, people.iloc[:1]]))
    buyer_without_dates = _features([("b", 10, 2, NA, NA, 2, NA)])
    with pytest.raises(ValueError, match="days_since_first_paid"):
        lifecycle.classify_lifecycle(buyer_without_dates)
    with pytest.raises(ValueError, match="missing columns"):
        lifecycle.classify_lifecycle(people.drop(columns="paid_orders"))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=400),
            st.integers(min_value=0, max_value=400),
            st.integers(min_value=0, max_value=10),
            st.floats(min_value=0.5, max_value=90),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_every_person_gets_exactly_one_consistent_stage(rows):
    features = []
    for i, (last_paid, extra_history, orders, interval) in enumerate(rows):
        first_paid = last_paid + extra_history if orders > 1 else last_paid
        activity = min(last_paid, 3) if orders else last_paid
        features.append(
            (
                f"u{i}",
                first_paid + 5,
                activity,
                first_paid if orders else NA,
                last_paid if orders else NA,
                orders,
                interval if orders > 1 else NA,
            )
        )
    frame = _features(features)
    classified = lifecycle.classify_lifecycle(frame)
    stages = classified["lifecycle_stage"].to_numpy()
    assert len(classified) == len(frame) and set(stages) <= set(lifecycle.STAGES)
    orders = frame["paid_orders"].to_numpy(dtype=int)
    activity = frame["days_since_last_activity"].to_numpy(dtype=float)
    churned = activity >= 180
    assert ((stages == "churned") == churned).all()
    assert ((stages == "prospect") == (~churned & (orders == 0))).all()
    assert (orders[stages == "mature"] >= 4).all()
    assert ((orders[stages == "growing"] >= 2) & (orders[stages == "growing"] <= 3)).all()


# --- history and transitions ----------------------------------------------------------------------

WEEK_1 = dt.date(2024, 6, 1)
WEEK_2 = dt.date(2024, 6, 8)

# Same people a week apart: everyone's day counts grow by 7 unless they did something in between.
RUN_1 = [
    ("a", 40, 5, 25, 5, 2, 20.0),  # new (first paid 25 days ago)
    ("b", 60, 55, 55, 55, 1, NA),  # new (one order, not lapsed)
    ("c", 300, 10, 200, 10, 5, 10.0),  # mature
    ("d", 200, 175, NA, NA, 0, NA),  # prospect
    ("e", 20, 3, NA, NA, 0, NA),  # prospect
    ("f", 100, 40, 80, 40, 3, 15.0),  # growing
    ("h", 300, 10, 200, 10, 6, 10.0),  # mature, erased before week 2
]
RUN_2 = [
    ("a", 47, 12, 32, 12, 2, 20.0),  # growing: past the 30-day new window
    ("b", 67, 62, 62, 62, 1, NA),  # declining: 62 > 60 days
    ("c", 307, 17, 207, 17, 5, 10.0),  # mature
    ("d", 207, 182, NA, NA, 0, NA),  # churned: 182 >= 180 idle days
    ("e", 27, 0, 0, 0, 1, NA),  # new: first order today
    ("f", 107, 47, 87, 47, 3, 15.0),  # growing
    ("g", 2, 2, NA, NA, 0, NA),  # prospect, first seen this week
]


def _run(rows: list[tuple]) -> pd.DataFrame:
    return lifecycle.classify_lifecycle(_features(rows))[["user_key", "lifecycle_stage"]]


def test_history_appends_and_is_idempotent_per_as_of_date():
    history = lifecycle.append_history(None, _run(RUN_1), WEEK_1)
    history = lifecycle.append_history(history, _run(RUN_2), WEEK_2)
    assert list(history.columns) == ["user_key", "as_of_date", "lifecycle_stage"]
    assert len(history) == len(RUN_1) + len(RUN_2)
    again = lifecycle.append_history(history, _run(RUN_2), WEEK_2)
    pd.testing.assert_frame_equal(again, history)
    # a re-run of week 2 with different results replaces week 2 only
    rerun = _run(RUN_2).assign(lifecycle_stage="mature")
    replaced = lifecycle.append_history(history, rerun, "2024-06-08")
    assert len(replaced) == len(history)
    assert set(replaced.loc[replaced["as_of_date"] == WEEK_2, "lifecycle_stage"]) == {"mature"}
    week_1 = replaced[replaced["as_of_date"] == WEEK_1].reset_index(drop=True)
    pd.testing.assert_frame_equal(week_1, history[history["as_of_date"] == WEEK_1].reset_index(drop=True))


def test_history_read_back_with_timestamps_still_replaces_the_same_day():
    history = lifecycle.append_history(None, _run(RUN_1), WEEK_1)
    # as a warehouse round trip would return it: dates as timestamps
    stored = history.assign(as_of_date=pd.to_datetime(history["as_of_date"]))
    again = lifecycle.append_history(stored, _run(RUN_1), pd.Timestamp("2024-06-01"))
    pd.testing.assert_frame_equal(again, history)


def test_transitions_are_counted_exactly_across_two_runs_a_week_apart():
    history = lifecycle.append_history(None, _run(RUN_1), WEEK_1)
    history = lifecycle.append_history(history, _run(RUN_2), WEEK_2)
    transitions = lifecycle.stage_transitions(history, WEEK_1, WEEK_2)
    assert list(transitions.columns) == ["from_stage", "to_stage", "users"]
    assert list(transitions.itertuples(index=False, name=None)) == [
        ("none", "prospect", 1),
        ("prospect", "new", 1),
        ("prospect", "churned", 1),
        ("new", "growing", 1),
        ("new", "declining", 1),
        ("growing", "growing", 1),
        ("mature", "none", 1),
        ("mature", "mature", 1),
    ]
    assert transitions["users"].sum() == len({row[0] for row in RUN_1 + RUN_2})


def test_transitions_from_a_date_before_any_history_start_from_none():
    history = lifecycle.append_history(None, _run(RUN_1), WEEK_1)
    transitions = lifecycle.stage_transitions(history, dt.date(2024, 5, 25), WEEK_1)
    assert set(transitions["from_stage"]) == {"none"}
    assert dict(zip(transitions["to_stage"], transitions["users"], strict=True)) == {
        "prospect": 2,
        "new": 2,
        "growing": 1,
        "mature": 2,
    }
    with pytest.raises(ValueError, match="to_date"):
        lifecycle.stage_transitions(history, WEEK_1, WEEK_2)


# --- scoring against planted stages ---------------------------------------------------------------


def test_confusion_matrix_and_accuracy():
    truth = pd.DataFrame(
        {
            "user_key": ["1", "2", "3", "4", "5", "6"],
            "planted_stage": ["new", "new", "mature", "churned", "declining", "prospect"],
        }
    )
    predicted = pd.DataFrame(
        {
            "user_key": ["1", "2", "3", "4", "5", "7"],
            "lifecycle_stage": ["new", "growing", "mature", "churned", "churned", "new"],
        }
    )
    matrix = lifecycle.confusion_matrix(predicted, truth, truth_column="planted_stage")
    assert list(matrix.index) == [*lifecycle.STAGES, "none"] == list(matrix.columns)
    assert int(matrix.to_numpy().sum()) == 7
    assert matrix.loc["new", "new"] == 1 and matrix.loc["new", "growing"] == 1
    assert matrix.loc["declining", "churned"] == 1 and matrix.loc["churned", "churned"] == 1
    assert matrix.loc["prospect", "none"] == 1 and matrix.loc["none", "new"] == 1
    assert int(np.trace(matrix.to_numpy())) == 3
    assert lifecycle.accuracy(matrix) == pytest.approx(3 / 7)


def test_perfect_predictions_score_one(people):
    classified = lifecycle.classify_lifecycle(people)
    truth = pd.DataFrame(
        {"user_key": [row[0] for row, _ in PEOPLE], "lifecycle_stage": [s for _, s in PEOPLE]}
    )
    matrix = lifecycle.confusion_matrix(classified, truth)
    assert lifecycle.accuracy(matrix) == 1.0
    assert list(matrix.index) == list(lifecycle.STAGES)


def test_rules_markdown_uses_the_configured_thresholds():
    markdown = lifecycle.lifecycle_rules_markdown(LifecycleConfig(new_days=14, churn_days=90))
    assert "fewer than 14 days ago" in markdown and "90 days or more" in markdown
    for stage in lifecycle.STAGES:
        assert f"| {stage} |" in markdown
