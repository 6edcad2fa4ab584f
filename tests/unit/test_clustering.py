"""Clustering: planted personas are recovered, ids survive refreshes, and the model round-trips."""

import json
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from ml_assets.clustering import (
    ClusteringConfig,
    ClusterModel,
    assign_clusters,
    assign_with_previous,
    centroid_distances,
    degenerate_reasons,
    detect_log_columns,
    feature_matrix,
    fit_clusters,
    imputation_values,
    match_to_previous,
    refit_and_match,
    select_indicator_columns,
    standardised_features,
)

TIME_OF_DAY = ["share_morning", "share_daytime", "share_evening", "share_late_night"]
CONTENT = ["share_article", "share_video", "share_live"]
FEATURES = [
    *TIME_OF_DAY,
    *CONTENT,
    "coupon_use_rate",
    "discount_share",
    "shares_per_active_day",
    "group_messages_per_active_day",
    "avg_dwell_seconds",
    "avg_order_value",
    "orders_per_month",
    "consultations_per_active_day",
]


class Persona(NamedTuple):
    time_mix: list[float]
    content_mix: list[float]
    coupon_rate: float
    discount_share: float
    shares: float
    group_messages: float
    dwell_seconds: float
    order_value: float
    orders_per_month: float
    consultations: float
    never_orders: float  # probability of never having ordered (order features null)


P = Persona
PERSONAS = {
    "night_owl_video": P([.05, .15, .20, .60], [.10, .80, .10], .15, .10, .2, .1, 240, 120, 0.6, .02, .4),
    "morning_reader": P([.60, .20, .15, .05], [.80, .10, .10], .10, .08, .2, .1, 150, 150, 0.4, .02, .5),
    "coupon_hunter": P([.15, .50, .30, .05], [.30, .30, .40], .85, .45, .3, .3, 60, 50, 3.0, .05, .05),
    "live_shopper": P([.05, .20, .65, .10], [.10, .15, .75], .20, .10, .2, .2, 400, 450, 2.0, .05, .05),
    "community_sharer": P([.15, .35, .40, .10], [.40, .40, .20], .30, .15, 3.0, 5.0, 90, 100, 1.0, .05, .2),
    "consulter": P([.20, .55, .20, .05], [.55, .30, .15], .05, .02, .1, .1, 120, 900, 0.8, 1.5, .1),
}  # fmt: skip
EARLY_BIRD_LIVE = {
    "early_bird_live": P([.70, .10, .10, .10], [.05, .15, .80], .5, .3, 1.0, 1.0, 300, 300, 1.0, .3, .1),
}  # fmt: skip
DEFAULTS = ClusteringConfig()


def planted_population(per_persona: int, seed: int, personas=PERSONAS, key_prefix: str = "u") -> pd.DataFrame:
    """Users drawn around each persona's profile, with nulls for people who never ordered."""
    rng = np.random.default_rng(seed)
    n = per_persona
    groups = []
    for planted, p in enumerate(personas.values()):
        never_ordered = rng.random(n) < p.never_orders
        group = pd.DataFrame(rng.dirichlet(np.array(p.time_mix) * 40, n), columns=TIME_OF_DAY)
        group[CONTENT] = rng.dirichlet(np.array(p.content_mix) * 40, n)
        coupon_rate = rng.beta(p.coupon_rate * 20, (1 - p.coupon_rate) * 20, n)
        discount_share = rng.beta(p.discount_share * 20, (1 - p.discount_share) * 20, n)
        group["coupon_use_rate"] = np.where(never_ordered, np.nan, coupon_rate)
        group["discount_share"] = np.where(never_ordered, np.nan, discount_share)
        group["shares_per_active_day"] = rng.gamma(4, p.shares / 4, n)
        group["group_messages_per_active_day"] = rng.gamma(4, p.group_messages / 4, n)
        group["avg_dwell_seconds"] = rng.lognormal(np.log(p.dwell_seconds), 0.3, n)
        group["avg_order_value"] = np.where(
            never_ordered, np.nan, rng.lognormal(np.log(p.order_value), 0.3, n)
        )
        group["orders_per_month"] = np.where(never_ordered, 0.0, rng.gamma(6, p.orders_per_month / 6, n))
        group["consultations_per_active_day"] = rng.gamma(4, p.consultations / 4, n)
        group["planted"] = planted
        groups.append(group)
    population = pd.concat(groups, ignore_index=True)
    population.insert(0, "user_key", [f"{key_prefix}{i:06d}" for i in range(len(population))])
    return population


def share_keeping_id(before: pd.DataFrame, after: pd.DataFrame) -> float:
    """Share of the users in `before` whose cluster_id is the same in `after`."""
    joined = before.merge(after, on="user_key", suffixes=("_before", "_after"), validate="one_to_one")
    assert len(joined) == len(before)
    return float((joined["cluster_id_before"] == joined["cluster_id_after"]).mean())


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    return planted_population(per_persona=200, seed=0)


@pytest.fixture(scope="module")
def first_fit(population):
    return fit_clusters(population, FEATURES, DEFAULTS)


@pytest.fixture(scope="module")
def refreshed_population(population) -> pd.DataFrame:
    newcomers = planted_population(per_persona=10, seed=1, key_prefix="n")  # 60 users = 5% more
    return pd.concat([population, newcomers], ignore_index=True)


def test_planted_personas_are_recovered(population, first_fit):
    model, assignments, diagnostics = first_fit
    assert diagnostics["chosen_k"] == 6 == model.k
    assert sorted(diagnostics["k_scores"]) == list(range(3, 11))
    assert diagnostics["silhouette"] == max(diagnostics["k_scores"].values())
    assert adjusted_rand_score(population["planted"], assignments["cluster_id"]) >= 0.8
    assert assignments["user_key"].tolist() == population["user_key"].tolist()
    assert sum(diagnostics["sizes"].values()) == len(population)
    assert diagnostics["degenerate_reasons"] == []
    # non-buyers share one null pattern across three features: a single indicator stands for all of them
    assert diagnostics["indicator_columns"] == ["is_missing__coupon_use_rate"]
    assert "avg_order_value" in diagnostics["log_columns"]


def test_first_fit_numbers_clusters_by_size(first_fit):
    model, _, diagnostics = first_fit
    assert model.cluster_ids == tuple(range(6))
    sizes = [diagnostics["sizes"][i] for i in model.cluster_ids]
    assert sizes[0] == max(sizes)


def test_sampled_fit_on_a_larger_population_still_recovers_personas(population):
    config = ClusteringConfig(
        fit_sample_size=800, selection_sample_size=500, silhouette_sample_size=300, batch_size=250
    )
    model, assignments, diagnostics = fit_clusters(population, FEATURES, config)
    assert diagnostics["n_fit_users"] == 800
    assert diagnostics["n_selection_users"] == 500
    assert model.k == 6
    assert adjusted_rand_score(population["planted"], assignments["cluster_id"]) >= 0.8


def test_refresh_keeps_the_model_when_nothing_changed(first_fit, refreshed_population):
    previous, before, _ = first_fit
    model, after, diagnostics = assign_with_previous(previous, refreshed_population, config=DEFAULTS)
    assert diagnostics["decision"] == "keep_previous"
    assert model is previous
    margin = DEFAULTS.refit_silhouette_margin
    assert diagnostics["fresh_silhouette"] <= diagnostics["previous_silhouette"] + margin
    assert share_keeping_id(before, after) == 1.0
    assert len(after) == len(refreshed_population)


def test_refresh_by_refit_and_match_keeps_ids(first_fit, refreshed_population):
    previous, before, _ = first_fit
    model, after, diagnostics = refit_and_match(previous, refreshed_population, config=DEFAULTS)
    assert share_keeping_id(before, after) >= 0.95
    assert set(model.cluster_ids) == set(previous.cluster_ids)
    assert diagnostics["new_cluster_ids"] == [] == diagnostics["retired_cluster_ids"]


def test_a_new_behavioural_group_forces_a_refit_with_a_fresh_id(population, first_fit):
    previous, before, _ = first_fit
    newcomers = planted_population(per_persona=270, seed=3, personas=EARLY_BIRD_LIVE, key_prefix="d")
    grown = pd.concat([population, newcomers], ignore_index=True)
    model, after, diagnostics = assign_with_previous(previous, grown, config=DEFAULTS)
    assert diagnostics["decision"] == "refit_and_match"
    margin = DEFAULTS.refit_silhouette_margin
    assert diagnostics["fresh_silhouette"] > diagnostics["previous_silhouette"] + margin
    assert model.k == 7
    assert diagnostics["new_cluster_ids"] == [6]
    assert share_keeping_id(before, after) >= 0.95
    newcomer_ids = after.loc[after["user_key"].str.startswith("d"), "cluster_id"]
    assert (newcomer_ids == 6).mean() >= 0.95


def test_permuted_rows_give_the_same_model_and_assignment(population, first_fit):
    model, assignments, _ = first_fit
    shuffled = population.sample(frac=1.0, random_state=7).reset_index(drop=True)
    shuffled_model, shuffled_assignments, _ = fit_clusters(shuffled, FEATURES, DEFAULTS)
    assert shuffled_model == model
    expected = assignments.set_index("user_key")["cluster_id"].loc[shuffled["user_key"]]
    assert shuffled_assignments["cluster_id"].tolist() == expected.tolist()


def test_model_round_trips_through_json(first_fit, population):
    model, assignments, _ = first_fit
    restored = ClusterModel.from_json(json.dumps(json.loads(model.to_json())))
    assert restored == model
    assert ClusterModel.from_dict(model.to_dict()) == model
    pd.testing.assert_frame_equal(assign_clusters(restored, population), assignments)


def test_unknown_model_format_is_refused(first_fit):
    data = {**first_fit[0].to_dict(), "format_version": 99}
    with pytest.raises(ValueError, match="format_version"):
        ClusterModel.from_dict(data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(min_value=1, max_value=150))
def test_assignment_does_not_depend_on_batch_size(first_fit, population, batch_size):
    model, assignments, _ = first_fit
    every_persona = population.iloc[::10]
    expected = assignments.iloc[::10].reset_index(drop=True)
    result = assign_clusters(model, every_persona, batch_size).reset_index(drop=True)
    pd.testing.assert_frame_equal(result, expected)


def test_nullable_warehouse_dtypes_assign_like_floats(first_fit, population):
    model, assignments, _ = first_fit
    nullable = population.astype({column: "Float64" for column in FEATURES})
    nullable["user_key"] = nullable["user_key"].astype("string")
    assert nullable["avg_order_value"].isna().any()
    result = assign_clusters(model, nullable)
    assert result["cluster_id"].tolist() == assignments["cluster_id"].tolist()


def two_feature_model(centroids, ids, mean=(0.0, 0.0), scale=(1.0, 1.0), log_columns=()) -> ClusterModel:
    return ClusterModel(
        feature_columns=("a", "b"),
        log_columns=tuple(log_columns),
        imputation_values={"a": 0.0, "b": 0.0},
        indicator_columns=(),
        scaler_mean=tuple(mean),
        scaler_scale=tuple(scale),
        centroids=tuple(tuple(c) for c in centroids),
        cluster_ids=tuple(ids),
        k=len(ids),
    )


def test_matching_keeps_partner_ids_and_gives_fresh_ids_to_newcomers():
    previous = two_feature_model([(0, 0), (10, 0), (0, 10)], ids=[4, 7, 9])
    new = two_feature_model([(0.2, 9.5), (25, 25), (9.8, 0.1), (0.1, -0.3)], ids=[0, 1, 2, 3])
    assert match_to_previous(new, previous) == {0: 9, 2: 7, 3: 4, 1: 10}


def test_matching_respects_max_distance_and_retires_unmatched_old_ids():
    previous = two_feature_model([(0, 0), (10, 0), (0, 10)], ids=[0, 1, 2])
    new = two_feature_model([(0.5, 0), (0, 14)], ids=[0, 1])
    assert match_to_previous(new, previous) == {0: 0, 1: 2}
    assert match_to_previous(new, previous, max_distance=3.0) == {0: 0, 1: 3}


def test_centroid_distance_is_measured_in_the_previous_space():
    # new: standardised (1, 1) with mean (1, 0) and scale (2, 1), b log-transformed -> raw a = 3, b = e - 1
    new = two_feature_model([(1, 1)], ids=[0], mean=(1, 0), scale=(2, 1), log_columns=["b"])
    # previous: no log, mean (0, 0), scale (1, 2) -> the new centroid sits at (3, (e - 1) / 2)
    previous = two_feature_model([(0, 0), (3, 0)], ids=[0, 1], scale=(1, 2))
    point = np.array([3.0, (np.e - 1) / 2])
    expected = [np.linalg.norm(point - [0, 0]), np.linalg.norm(point - [3, 0])]
    np.testing.assert_allclose(centroid_distances(new, previous), [expected], rtol=1e-12)


def test_preprocessing_rules_on_a_hand_made_frame():
    frame = pd.DataFrame(
        {
            "user_key": [f"k{i}" for i in range(20)],
            "orders": [np.nan] * 10 + [1.0] * 5 + [3.0] * 5,  # 50% null: indicator
            "order_value": [np.nan] * 10 + [10.0] * 10,  # same null pattern: no second indicator
            "dwell": [np.nan] + [5.0] * 19,  # 5% null: at the threshold, indicator
            "rare_null": [np.nan] + list(np.arange(19.0)),  # same pattern as dwell: no indicator
            "all_null": [np.nan] * 20,
            "heavy": [1.0] * 19 + [1000.0],
            "negative_heavy": [-1.0] * 19 + [1000.0],
        }
    )
    columns = ["orders", "order_value", "dwell", "rare_null", "all_null", "heavy", "negative_heavy"]
    raw = feature_matrix(frame, columns)
    assert imputation_values(raw, columns) == {
        "orders": 2.0,
        "order_value": 10.0,
        "dwell": 5.0,
        "rare_null": 9.0,
        "all_null": 0.0,
        "heavy": 1.0,
        "negative_heavy": -1.0,
    }
    assert select_indicator_columns(raw, columns, min_share=0.05) == ("orders", "dwell")
    assert select_indicator_columns(raw, columns, min_share=0.10) == ("orders",)
    assert detect_log_columns(raw, columns, skew_threshold=1.0) == ("heavy",)


def test_standardised_features_apply_imputation_log_and_indicator():
    model = ClusterModel(
        feature_columns=("x", "y"),
        log_columns=("y",),
        imputation_values={"x": 2.0, "y": np.e - 1},
        indicator_columns=("x",),
        scaler_mean=(1.0, 0.0, 0.5),
        scaler_scale=(2.0, 1.0, 0.5),
        centroids=((0.0, 0.0, 0.0),),
        cluster_ids=(0,),
        k=1,
    )
    frame = pd.DataFrame({"user_key": ["a", "b"], "x": [np.nan, 5.0], "y": [np.nan, 0.0]})
    np.testing.assert_allclose(standardised_features(model, frame), [[0.5, 1.0, 1.0], [2.0, 0.0, -1.0]])


def test_degenerate_reasons_flag_giants_and_crumbs():
    assert degenerate_reasons({0: 50, 1: 30, 2: 20}) == []
    assert degenerate_reasons({0: 850, 1: 100, 2: 50}) == ["cluster 0 holds 85.0% of users (> 80%)"]
    assert degenerate_reasons({0: 600, 1: 395, 2: 5}) == ["cluster 2 holds 0.50% of users (< 1%)"]
    assert degenerate_reasons({0: 0}) == ["no users assigned"]


def test_infinite_rates_are_refused(first_fit, population):
    broken = population.head(5).assign(orders_per_month=[1.0, np.inf, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="orders_per_month"):
        assign_clusters(first_fit[0], broken)


def test_duplicate_user_keys_are_refused(population):
    doubled = pd.concat([population.head(50), population.head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="unique"):
        fit_clusters(doubled, FEATURES, DEFAULTS)
