"""Clusters, personas, CLV, rules and recommendations materialized on a copy of the generated warehouse."""

import json
import math
from dataclasses import dataclass

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.ml_models import (
    BEHAVIOUR_COLUMNS,
    AssociationRulesConfig,
    ml_model_assets,
    ml_model_checks,
    user_clusters,
)
from orchestration.resources import HuaxiangResource
from orchestration.settings import Settings

pytestmark = pytest.mark.integration

# The generator plants no product affinities, so at the default 0.002 no product pair of the small test
# warehouse is frequent; 0.001 (about two baskets) gives product rules whose thresholds can be checked.
RULES_CONFIG = AssociationRulesConfig(min_support_product=0.001)
MODEL_KEYS = {
    ("ml", name)
    for name in (
        "user_clusters",
        "cluster_models",
        "personas",
        "user_clv",
        "association_rules",
        "recommendations",
    )
}


@dataclass
class ModelRun:
    settings: Settings
    first: dg.ExecuteInProcessResult
    second: dg.ExecuteInProcessResult
    clusters_after_first: pd.DataFrame

    def frame(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as conn:
            return conn.execute(sql).df()

    def metadata(self, key: tuple[str, ...]) -> dict:
        events = [
            event
            for event in self.first.get_asset_materialization_events()
            if event.materialization.asset_key == dg.AssetKey(list(key))
        ]
        return {name: value.value for name, value in events[-1].materialization.metadata.items()}


def read_clusters(settings: Settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return conn.execute("select user_key, cluster_id from ml.user_clusters").df()


@pytest.fixture(scope="module")
def model_run(pipeline_run, tmp_path_factory) -> ModelRun:
    """Every ML asset and check once, then the clusters again, on a private copy of the shared warehouse."""
    root = tmp_path_factory.mktemp("ml_models")
    settings = pipeline_run.private_copy(root)
    resources = {"huaxiang": HuaxiangResource.from_settings(settings)}
    first = dg.materialize(
        [*ml_model_assets, *ml_model_checks],
        resources=resources,
        run_config=dg.RunConfig({"ml__association_rules": RULES_CONFIG}),
    )
    clusters_after_first = read_clusters(settings)
    second = dg.materialize([user_clusters], resources=resources)
    return ModelRun(settings, first, second, clusters_after_first)


def contract_consent(run: ModelRun, purpose: str) -> pd.DataFrame:
    """People as of the run and their consent for `purpose`, derived from raw rows by the contract's rule."""
    raw = run.frame(
        "select user_id, granted, recorded_at, file_seq, line_number from raw.consents"
        f" where purpose = '{purpose}'"
    )
    local_day = raw["recorded_at"].dt.tz_localize("UTC").dt.tz_convert(run.settings.timezone).dt.date
    raw = raw[local_day <= run.settings.as_of]
    latest = raw.sort_values(["recorded_at", "file_seq", "line_number"]).groupby("user_id").tail(1)
    withdrawn_ids = set(latest.loc[~latest["granted"].astype(bool), "user_id"])
    keys = run.frame(
        "select identifier_value as user_id, user_key from identity.identity_map"
        " where identifier_type = 'user_id' and not is_shared"
    )
    withdrawn = set(keys.loc[keys["user_id"].isin(withdrawn_ids), "user_key"])
    people = run.frame("select user_key, frequency from marts.user_features")
    return people.assign(granted=~people["user_key"].isin(withdrawn))


def test_every_asset_materializes_and_every_model_check_passes(model_run):
    assert model_run.first.success and model_run.second.success
    materialized = {
        tuple(e.materialization.asset_key.path) for e in model_run.first.get_asset_materialization_events()
    }
    assert materialized == MODEL_KEYS
    checks = {c.check_name: c for c in model_run.first.get_asset_check_evaluations()}
    assert set(checks) == {"clusters_not_degenerate", "bgnbd_converged", "recommendations_beat_popularity"}
    assert all(c.severity == dg.AssetCheckSeverity.WARN for c in checks.values())
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items() if not c.passed}


def test_clusters_cover_exactly_the_people_with_profiling_consent(model_run):
    people = contract_consent(model_run, "profiling")
    clustered = set(model_run.clusters_after_first["user_key"])
    assert (~people["granted"]).sum() > 0, "the generated data should include withdrawn profiling consent"
    assert clustered == set(people.loc[people["granted"], "user_key"])
    metadata = model_run.metadata(("ml", "user_clusters"))
    assert metadata["people_without_profiling_consent"] == (~people["granted"]).sum()
    assert metadata["people_clustered"] == len(clustered)
    assert metadata["decision"] in {"first_fit", "keep_previous", "refit_and_match"}
    assert metadata["chosen_k"] == model_run.clusters_after_first["cluster_id"].nunique()


def test_a_second_run_keeps_cluster_ids(model_run):
    after = read_clusters(model_run.settings)
    joined = model_run.clusters_after_first.merge(after, on="user_key", suffixes=("_first", "_second"))
    assert len(joined) == len(model_run.clusters_after_first)
    kept = (joined["cluster_id_first"] == joined["cluster_id_second"]).mean()
    assert kept >= 0.95, kept
    runs = model_run.frame(
        "select run_number, decision, model_json from ml.cluster_models order by run_number"
    )
    assert runs["run_number"].tolist()[-2:] == [runs["run_number"].max() - 1, runs["run_number"].max()]
    assert json.loads(runs["model_json"].iloc[-1])["feature_columns"] == list(BEHAVIOUR_COLUMNS)


def test_clusters_recover_the_planted_personas_better_than_chance(model_run):
    metadata = model_run.metadata(("ml", "user_clusters"))
    ari = metadata["planted_persona_ari_repeat_buyers"]
    print(f"adjusted Rand index vs planted personas (repeat buyers): {ari:.3f}")
    # Chance level is 0; the target of 0.6 is met at 3,000 people, not at this size (see report).
    assert metadata["planted_repeat_buyers_compared"] >= 200
    assert ari > 0.3


def test_personas_name_every_cluster_once(model_run):
    personas = model_run.frame("select * from ml.personas")
    clusters = model_run.clusters_after_first
    assert sorted(personas["cluster_id"]) == sorted(clusters["cluster_id"].unique())
    assert personas["name_zh"].is_unique and personas["name_en"].is_unique
    sizes = clusters["cluster_id"].value_counts()
    assert dict(zip(personas["cluster_id"], personas["size"], strict=True)) == sizes.to_dict()
    for row in personas.itertuples():
        features = json.loads(row.top_features)
        assert {f["feature"] for f in features} <= set(BEHAVIOUR_COLUMNS)
        assert row.description_zh.startswith(row.name_zh) and f"{row.size:,}" in row.description_en
    overview = model_run.metadata(("ml", "personas"))["personas"]
    assert all(name in overview for name in personas["name_zh"])


def test_every_consented_buyer_has_a_clv_row_with_consistent_scores(model_run):
    people = contract_consent(model_run, "profiling")
    buyers = set(people.loc[people["granted"] & (people["frequency"] > 0), "user_key"])
    clv = model_run.frame("select * from ml.user_clv")
    assert set(clv["user_key"]) == buyers and clv["user_key"].is_unique
    assert clv["p_alive"].between(0, 1).all()
    assert ((clv["churn_risk"] - (1 - clv["p_alive"])).abs() < 1e-12).all()
    assert (clv["churn_risk_band"] == "high").eq(clv["churn_risk"] >= 0.7).all()
    assert (clv["expected_value"] >= 0).all() and (clv["horizon_weeks"] == 26).all()
    # Repeat purchases follow the CDNOW rule: distinct local purchase days minus the first one.
    days = model_run.frame(
        "select user_key, count(distinct ordered_date) - 1 as repeats from intermediate.int_orders_as_of"
        " where is_paid group by user_key"
    )
    joined = clv.merge(days, on="user_key")
    assert len(joined) == len(clv) and (joined["repeat_purchases"] == joined["repeats"]).all()


def test_clv_backtest_is_reported(model_run):
    metadata = model_run.metadata(("ml", "user_clv"))
    print({k: v for k, v in metadata.items() if k.startswith("backtest_") and not k.endswith("parameters")})
    assert metadata["bgnbd_converged"] and metadata["gamma_gamma_converged"]
    assert metadata["backtest_holdout_weeks"] == 13
    assert metadata["backtest_total_actual"] > 0 and metadata["backtest_rmse"] >= metadata["backtest_mae"] > 0
    assert 0 < metadata["backtest_correlation"] <= 1


def test_rules_meet_their_thresholds_and_quote_exact_counts(model_run):
    rules = model_run.frame("select * from ml.association_rules")
    minimum = {"product": RULES_CONFIG.min_support_product, "category": RULES_CONFIG.min_support_category}
    assert set(rules["level"]) == set(minimum)
    for level, min_support in minimum.items():
        at_level = rules[rules["level"] == level]
        assert (at_level["support"] >= min_support).all(), level
    assert (rules["lift"] >= RULES_CONFIG.min_lift).all()
    assert (rules["confidence"] >= RULES_CONFIG.min_confidence).all()
    baskets = model_run.frame(
        "select distinct items.order_id, items.category from marts.fct_order_items as items"
        " inner join intermediate.int_orders_as_of as orders on orders.order_id = items.order_id"
        " where orders.is_paid"
    )
    single = ~rules["antecedent"].str.contains(" + ", regex=False) & ~rules["consequent"].str.contains(
        " + ", regex=False
    )
    pair = rules[(rules["level"] == "category") & single].iloc[0]
    has = baskets.groupby("order_id")["category"].agg(set)
    both = has.map(lambda c: pair.antecedent in c and pair.consequent in c).sum()
    assert math.isclose(pair.support, both / len(has), rel_tol=1e-12)
    assert math.isclose(pair.confidence, both / has.map(lambda c: pair.antecedent in c).sum(), rel_tol=1e-12)
    product_rules = rules[rules["level"] == "product"]
    assert (
        product_rules["description"] != product_rules["antecedent"] + " → " + product_rules["consequent"]
    ).all()


def test_recommendations_go_only_to_consented_people_and_skip_what_they_bought(model_run):
    people = contract_consent(model_run, "personalization")
    recommendations = model_run.frame("select * from ml.recommendations")
    assert (~people["granted"]).sum() > 0
    assert set(recommendations["user_key"]) == set(people.loc[people["granted"], "user_key"])
    bought = model_run.frame(
        "select distinct orders.user_key, items.product_id from marts.fct_order_items as items"
        " inner join intermediate.int_orders_as_of as orders on orders.order_id = items.order_id"
        " where orders.is_paid and orders.user_key is not null"
    )
    assert recommendations.merge(bought, on=["user_key", "product_id"]).empty
    per_person = recommendations.groupby("user_key")["rank"].agg(list)
    assert per_person.map(lambda ranks: ranks == list(range(1, 11))).all()
    metadata = model_run.metadata(("ml", "recommendations"))
    assert metadata["hit_rate"] >= metadata["baseline_hit_rate"] and metadata["holdout_users_evaluated"] > 100
