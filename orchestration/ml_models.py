"""Thin Dagster assets for clusters, personas, CLV, association rules and recommendations (`ml.*`).

Consent: clusters, personas and CLV are profiling, so only people whose profiling consent stands as of the
run's date get a row; recommendations go only to people whose personalization consent stands. Aggregate
models (association rules, item similarity, popularity) learn from every paid basket and interaction.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from ml_assets.clustering import (
    ClusteringConfig,
    ClusterModel,
    assign_clusters,
    choose_model,
    degenerate_reasons,
    with_sizes,
)
from ml_assets.clv import backtest_bgnbd, fit_bgnbd, fit_gamma_gamma, rfm_summary, score_customers
from ml_assets.personas import PersonaConfig, describe_clusters
from ml_assets.recommend import evaluate_holdout, recommend
from ml_assets.rules import ITEM_SEPARATOR, association_rules, frequent_itemsets
from orchestration.ml import markdown_table
from orchestration.resources import (
    DEFAULT_BATCH_SIZE,
    HuaxiangResource,
    batch_writer,
    iter_frames,
    replace_table,
    table_exists,
    whole_groups,
)

USER_FEATURES = dg.AssetKey(["marts", "user_features"])
DIM_USERS = dg.AssetKey(["marts", "dim_users"])
DIM_PRODUCTS = dg.AssetKey(["marts", "dim_products"])
ORDER_ITEMS = dg.AssetKey(["marts", "fct_order_items"])
ORDERS_AS_OF = dg.AssetKey(["intermediate", "int_orders_as_of"])
EVENTS_AS_OF = dg.AssetKey(["intermediate", "int_events_as_of"])
USER_CONSENTS = dg.AssetKey(["intermediate", "int_user_consents"])
IDENTITY_MAP = dg.AssetKey(["identity", "identity_map"])

USER_CLUSTERS = dg.AssetKey(["ml", "user_clusters"])
CLUSTER_MODELS = dg.AssetKey(["ml", "cluster_models"])
PERSONAS = dg.AssetKey(["ml", "personas"])
USER_CLV = dg.AssetKey(["ml", "user_clv"])
ASSOCIATION_RULES = dg.AssetKey(["ml", "association_rules"])
RECOMMENDATIONS = dg.AssetKey(["ml", "recommendations"])

PER_ACTIVE_DAY = {
    "shares_sent": "shares_per_active_day",
    "group_messages": "group_messages_per_active_day",
    "consultations": "consultations_per_active_day",
    "video_seconds": "video_seconds_per_active_day",
}
RATE_COLUMNS = (
    "share_morning",
    "share_daytime",
    "share_evening",
    "share_late_night",
    "share_article",
    "share_video",
    "share_live",
    "coupon_use_rate",
    "discount_share",
    "avg_order_value",
    "avg_dwell_seconds",
    "full_price_item_share",
    "avg_item_price",
)
BEHAVIOUR_COLUMNS = (*RATE_COLUMNS, *PER_ACTIVE_DAY.values(), "orders_per_month")

# orders_per_month counts paid orders per month in which the person did anything (visited or paid), so
# it measures how much someone buys when around, not how long ago they arrived.
BEHAVIOUR_SQL = f"""
with paid_orders as (
    select user_key, ordered_date
    from intermediate.int_orders_as_of
    where is_paid and user_key is not null
),

activity_months as (
    select user_key, count(distinct date_trunc('month', activity_date)) as active_months
    from (
        select user_key, occurred_date as activity_date from intermediate.int_events_as_of
        union all
        select user_key, ordered_date as activity_date from paid_orders
    ) as activity
    group by user_key
)

select
    features.user_key,
    coalesce(consents.has_profiling_consent, true) as has_profiling_consent,
    features.frequency::bigint as frequency,
    features.active_days::bigint as active_days,
    coalesce(activity_months.active_months, 0)::bigint as active_months,
    {", ".join(f"features.{c}::double as {c}" for c in (*RATE_COLUMNS, *PER_ACTIVE_DAY))}
from marts.user_features as features
left join intermediate.int_user_consents as consents on consents.user_key = features.user_key
left join activity_months on activity_months.user_key = features.user_key
"""
CONSENTING_BEHAVIOUR_SQL = f"select * from ({BEHAVIOUR_SQL}) where has_profiling_consent order by user_key"
WITHOUT_PROFILING_CONSENT_SQL = """
select count(*)
from marts.user_features as features
left join intermediate.int_user_consents as consents on consents.user_key = features.user_key
where not coalesce(consents.has_profiling_consent, true)
"""


def behaviour_sample_sql(size: int) -> str:
    """The consenting people whose md5(user_key) is among the `size` smallest, in user_key order.

    Like the model's own hash sample: independent of row order and stable across refreshes, and md5 (unlike
    DuckDB's hash()) does not change between DuckDB versions. A repeatable reservoir sample depends on the
    table's row order, so a rewritten table would give another sample.
    """
    if size < 1:
        raise ValueError("the sample size must be positive")
    return (
        f"select * from (select * from ({BEHAVIOUR_SQL}) where has_profiling_consent"
        f" order by md5_number(user_key), user_key limit {int(size)}) order by user_key"
    )


def markdown_records(frame: pd.DataFrame, max_rows: int = 30) -> dg.MetadataValue:
    """A frame as a Markdown table, floats rounded so the UI stays readable."""
    return markdown_table(frame.round(4), max_rows)


def json_text(value: Any) -> str:
    """JSON for one warehouse cell; NaN becomes null since JSON has no NaN."""

    def clean(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        if isinstance(item, float | np.floating):
            return None if math.isnan(item) else float(item)
        if isinstance(item, np.integer):
            return int(item)
        return item

    return json.dumps(clean(value), ensure_ascii=False, sort_keys=True)


def latest_metadata(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> Mapping[str, Any]:
    """Plain values of the metadata of an asset's latest materialization (empty if never materialized)."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


# ---------------------------------------------------------------- clusters


def behavioural_features(people: pd.DataFrame) -> pd.DataFrame:
    """Counts turned into rates, so a heavy and a light user with the same habits look alike."""
    active_days = people["active_days"].astype("float64").where(people["active_days"] > 0)
    active_months = people["active_months"].astype("float64").where(people["active_months"] > 0)
    derived = {rate: people[count].astype("float64") / active_days for count, rate in PER_ACTIVE_DAY.items()}
    derived["orders_per_month"] = people["frequency"].astype("float64") / active_months
    frame = people[["user_key"]].assign(**{c: people[c].astype("float64") for c in RATE_COLUMNS}, **derived)
    return frame[["user_key", *BEHAVIOUR_COLUMNS]]


def read_behaviour(conn: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, int]:
    """Behavioural features of the people with profiling consent, and how many people lack it."""
    people = conn.execute(f"select * from ({BEHAVIOUR_SQL}) order by user_key").df()
    consented = people[people["has_profiling_consent"].astype(bool)].reset_index(drop=True)
    return behavioural_features(consented), len(people) - len(consented)


class UserClustersConfig(dg.Config):
    """The clustering knobs exposed in the Dagster UI; defaults come from ClusteringConfig."""

    min_k: int = ClusteringConfig.min_k
    max_k: int = ClusteringConfig.max_k
    selection_sample_size: int = ClusteringConfig.selection_sample_size
    silhouette_sample_size: int = ClusteringConfig.silhouette_sample_size
    fit_sample_size: int = ClusteringConfig.fit_sample_size
    batch_size: int = ClusteringConfig.batch_size
    n_init: int = ClusteringConfig.n_init
    random_state: int = ClusteringConfig.random_state
    refit_silhouette_margin: float = ClusteringConfig.refit_silhouette_margin

    def to_clustering_config(self) -> ClusteringConfig:
        return ClusteringConfig(**self.model_dump())


def read_latest_cluster_model(conn: duckdb.DuckDBPyConnection) -> tuple[ClusterModel | None, pd.DataFrame]:
    """The latest stored model (None before the first run) and every stored run, to append to."""
    if not table_exists(conn, "ml.cluster_models"):
        return None, pd.DataFrame()
    history = conn.execute("select * from ml.cluster_models order by run_number").df()
    if history.empty:
        return None, history
    return ClusterModel.from_json(history["model_json"].iloc[-1]), history


def append_model_run(
    history: pd.DataFrame, model: ClusterModel, diagnostics: Mapping[str, Any], as_of
) -> pd.DataFrame:
    """Keep every run's model, numbered, so a refresh can start from the last one and audits can look back."""
    run = pd.DataFrame(
        {
            "run_number": [int(history["run_number"].max()) + 1 if len(history) else 1],
            "as_of_date": [pd.Timestamp(as_of).date()],
            "decision": [diagnostics["decision"]],
            "k": [int(model.k)],
            "silhouette": [float(diagnostics["silhouette"])],
            "users_assigned": [int(sum(diagnostics["sizes"].values()))],
            "model_json": [model.to_json()],
        }
    )
    return run if history.empty else pd.concat([history[run.columns], run], ignore_index=True)


def planted_persona_agreement(
    truth: pd.DataFrame,
    crm_keys: pd.DataFrame,
    clusters: pd.DataFrame,
    frequency: pd.DataFrame,
    min_frequency: int = 2,
) -> tuple[float, int]:
    """Adjusted Rand index between clusters and planted personas among repeat buyers, and how many compared.

    Repeat buyers are the people whose features (order value, coupon use, item prices) are all observed.
    """
    joined = (
        truth[truth["crm_user_id"] != ""][["crm_user_id", "persona"]]
        .merge(crm_keys, on="crm_user_id")
        .merge(clusters, on="user_key")
        .merge(frequency, on="user_key")
    )
    repeat = joined[joined["frequency"] >= min_frequency]
    if repeat.empty:
        return float("nan"), 0
    return float(adjusted_rand_score(repeat["persona"], repeat["cluster_id"])), len(repeat)


def planted_cluster_metadata(landing_dir: Path, conn: duckdb.DuckDBPyConnection) -> dict[str, dg.MetadataValue]:
    """On generated data, how well clusters recover the planted personas; nothing otherwise."""
    truth_file = landing_dir / "_truth" / "persons.csv"
    if not truth_file.exists():
        return {}
    truth = pd.read_csv(truth_file, dtype=str, keep_default_na=False)
    clusters = conn.execute("select user_key, cluster_id from ml.user_clusters").df()
    crm_keys = conn.execute(
        "select identifier_value as crm_user_id, user_key from identity.identity_map"
        " where identifier_type = 'user_id' and not is_shared"
    ).df()
    frequency = conn.execute("select user_key, frequency::bigint as frequency from marts.user_features").df()
    ari, compared = planted_persona_agreement(truth, crm_keys, clusters, frequency)
    return {
        "planted_persona_ari_repeat_buyers": dg.MetadataValue.float(ari),
        "planted_repeat_buyers_compared": dg.MetadataValue.int(compared),
    }


def silhouette_table(diagnostics: Mapping[str, Any]) -> pd.DataFrame:
    """Silhouette per candidate k of the fit this run made (empty when the previous model was kept)."""
    scores = diagnostics.get("k_scores") or {}
    return pd.DataFrame({"k": list(scores), "silhouette": [float(v) for v in scores.values()]})


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            USER_CLUSTERS,
            deps=[USER_FEATURES, ORDERS_AS_OF, EVENTS_AS_OF, USER_CONSENTS, IDENTITY_MAP],
            group_name="ml",
            kinds={"python", "scikitlearn"},
            description="Behavioural cluster per person with profiling consent; ids stable across runs.",
        ),
        dg.AssetSpec(
            CLUSTER_MODELS,
            deps=[USER_FEATURES, ORDERS_AS_OF, EVENTS_AS_OF, USER_CONSENTS, IDENTITY_MAP],
            group_name="ml",
            kinds={"python", "scikitlearn"},
            description="The serialised cluster model of every run; the latest seeds the next refresh.",
        ),
    ]
)
def user_clusters(huaxiang: HuaxiangResource, config: UserClustersConfig):
    """KMeans on behavioural rates and shares, refreshed against the stored model so ids stay stable.

    The model is fitted on a bounded hash sample of the consenting people, then everyone is assigned to it a
    batch at a time, so memory does not grow with the population.
    """
    clustering = config.to_clustering_config()
    counts = pd.Series(dtype="int64")
    with huaxiang.connect() as conn:
        sample = behavioural_features(conn.execute(behaviour_sample_sql(clustering.fit_sample_size)).df())
        previous_model, history = read_latest_cluster_model(conn)
        model, diagnostics = choose_model(previous_model, sample, BEHAVIOUR_COLUMNS, clustering)
        with batch_writer(conn) as writer:
            for people in iter_frames(conn, CONSENTING_BEHAVIOUR_SQL, clustering.batch_size):
                assignments = assign_clusters(model, behavioural_features(people), clustering.batch_size)
                writer.append("ml.user_clusters", assignments)
                counts = counts.add(assignments["cluster_id"].value_counts(), fill_value=0)
            diagnostics = with_sizes(diagnostics, model, counts.astype("int64").to_dict())
            history = append_model_run(history, model, diagnostics, huaxiang.as_of_date())
            writer.append("ml.cluster_models", history)
        without_consent = int(conn.execute(WITHOUT_PROFILING_CONSENT_SQL).fetchall()[0][0])
        planted = planted_cluster_metadata(huaxiang.settings.landing_dir, conn)
    sizes = pd.DataFrame(
        {"cluster_id": list(diagnostics["sizes"]), "people": list(diagnostics["sizes"].values())}
    )
    yield dg.MaterializeResult(
        asset_key=USER_CLUSTERS,
        metadata={
            "decision": diagnostics["decision"],
            "chosen_k": int(model.k),
            "silhouette": float(diagnostics["silhouette"]),
            "silhouette_by_k": markdown_records(silhouette_table(diagnostics)),
            "sizes": markdown_table(sizes),
            "people_clustered": int(sum(diagnostics["sizes"].values())),
            "people_in_fit_sample": len(sample),
            "people_without_profiling_consent": without_consent,
            "degenerate_reasons": "; ".join(diagnostics["degenerate_reasons"]) or "none",
            **planted,
        },
    )
    yield dg.MaterializeResult(
        asset_key=CLUSTER_MODELS,
        metadata={"runs_kept": len(history), "model_run_number": int(history["run_number"].iloc[-1])},
    )


@dg.asset_check(
    asset=USER_CLUSTERS,
    name="clusters_not_degenerate",
    description="No cluster holds most people and none is a crumb: the segmentation is usable for targeting.",
)
def clusters_not_degenerate(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    with huaxiang.connect() as conn:
        model, _ = read_latest_cluster_model(conn)
        counts = dict(conn.execute("select cluster_id, count(*) from ml.user_clusters group by 1").fetchall())
    # Clusters of the model that nobody fell into count as size 0, which is itself degenerate.
    ids = set(counts) | (set(model.cluster_ids) if model else set())
    sizes = {int(i): int(counts.get(i, 0)) for i in sorted(ids)}
    reasons = degenerate_reasons(sizes)
    return dg.AssetCheckResult(
        passed=not reasons,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reasons": "; ".join(reasons) or "none", "sizes": json_text(sizes)},
    )


# ---------------------------------------------------------------- personas

# An unknown age band says nothing about a cluster, so the typical band is the commonest known one.
PERSONA_PEOPLE_SQL = """
select clusters.user_key, clusters.cluster_id, people.gender, nullif(people.age_band, 'unknown') as age_band,
       people.province, features.favourite_category
from ml.user_clusters as clusters
inner join marts.dim_users as people on people.user_key = clusters.user_key
left join marts.user_features as features on features.user_key = clusters.user_key
"""


class PersonasConfig(dg.Config):
    name_effect_threshold: float = 0.5
    top_feature_count: int = 5
    described_feature_count: int = 3
    top_province_count: int = 3
    top_category_count: int = 3

    def to_persona_config(self) -> PersonaConfig:
        return PersonaConfig(
            name_effect_threshold=self.name_effect_threshold,
            top_feature_count=self.top_feature_count,
            described_feature_count=self.described_feature_count,
            top_province_count=self.top_province_count,
            top_category_count=self.top_category_count,
            category_column="favourite_category",
        )


def persona_table(described: pd.DataFrame) -> pd.DataFrame:
    """describe_clusters' rows with list and dict columns as JSON text, ready for the warehouse."""
    columns = ["top_features", "top_provinces", "top_categories"]
    table = described.assign(**{c: described[c].map(json_text) for c in columns})
    return table[
        [
            "cluster_id",
            "name_zh",
            "name_en",
            "size",
            "share",
            "description_zh",
            "description_en",
            "typical_gender",
            "typical_age_band",
            *columns,
        ]
    ]


@dg.asset(
    key=PERSONAS,
    deps=[USER_CLUSTERS, DIM_USERS, USER_FEATURES, ORDERS_AS_OF, EVENTS_AS_OF, USER_CONSENTS],
    group_name="ml",
    kinds={"python"},
    description="One named, described persona per behavioural cluster, in Chinese and English.",
)
def personas(huaxiang: HuaxiangResource, config: PersonasConfig) -> dg.MaterializeResult:
    """Name and describe each cluster by the behaviour that sets it apart, plus who its people are."""
    with huaxiang.connect() as conn:
        behaviour, _ = read_behaviour(conn)
        people = conn.execute(PERSONA_PEOPLE_SQL).df().merge(behaviour, on="user_key")
        described = describe_clusters(people, BEHAVIOUR_COLUMNS, None, config.to_persona_config())
        table = persona_table(described)
        replace_table(conn, "ml.personas", table)
    overview = table[["cluster_id", "name_zh", "name_en", "size", "share", "description_en"]]
    return dg.MaterializeResult(
        metadata={"personas": markdown_records(overview), "clusters_described": len(table)}
    )


# ---------------------------------------------------------------- customer lifetime value

PAID_TRANSACTIONS_SQL = """
select orders.user_key as customer_id, orders.ordered_date::timestamp as occurred_at,
       orders.paid_amount::double as amount
from intermediate.int_orders_as_of as orders
inner join intermediate.int_user_consents as consents on consents.user_key = orders.user_key
where orders.is_paid and consents.has_profiling_consent
"""
# Amount last only so that same-day purchases are summed in one fixed order.
ORDERED_TRANSACTIONS_SQL = f"{PAID_TRANSACTIONS_SQL} order by customer_id, occurred_at, amount"


def clv_sample_sql(customers: int) -> str:
    """Paid transactions of the `customers` buyers with the smallest md5(user_key), as the clusters sample."""
    if customers < 1:
        raise ValueError("the sample size must be positive")
    return f"""
    with sampled as (
        select distinct customer_id from ({PAID_TRANSACTIONS_SQL})
        order by md5_number(customer_id), customer_id limit {int(customers)}
    )
    select * from ({PAID_TRANSACTIONS_SQL}) semi join sampled using (customer_id)
    order by customer_id, occurred_at, amount
    """


CLV_COLUMNS = [
    "user_key",
    "repeat_purchases",
    "recency_weeks",
    "tenure_weeks",
    "avg_repeat_spend",
    "p_alive",
    "churn_risk",
    "churn_risk_band",
    "expected_purchases",
    "expected_average_value",
    "expected_value",
    "horizon_weeks",
]


class UserClvConfig(dg.Config):
    fit_sample_customers: int = 200_000
    batch_size: int = DEFAULT_BATCH_SIZE
    horizon_weeks: float = 26.0
    holdout_weeks: int = 13
    weekly_discount_rate: float = 0.0
    medium_churn_risk_from: float = 0.3
    high_churn_risk_from: float = 0.7


def clv_table(summary: pd.DataFrame, scores: pd.DataFrame, horizon_weeks: float) -> pd.DataFrame:
    """One row per buyer: the BG/NBD summary in weeks next to the scores, with warehouse names."""
    table = summary.rename(
        columns={
            "customer_id": "user_key",
            "frequency": "repeat_purchases",
            "recency": "recency_weeks",
            "T": "tenure_weeks",
            "monetary_value": "avg_repeat_spend",
        }
    ).join(scores.drop(columns="customer_id"))
    return table.assign(horizon_weeks=float(horizon_weeks))[CLV_COLUMNS]


def empty_clv_table() -> pd.DataFrame:
    """The CLV table's columns and types with no rows, for a warehouse without paid orders yet."""
    text_columns = {"user_key", "churn_risk_band"}
    return pd.DataFrame(
        {c: pd.Series(dtype="string" if c in text_columns else "float64") for c in CLV_COLUMNS}
    )


def fit_metadata(prefix: str, fit) -> dict[str, Any]:
    """Parameters, likelihood and convergence of one fit, flat so checks can read them back."""
    return {
        f"{prefix}_converged": bool(fit.converged),
        f"{prefix}_log_likelihood": float(fit.log_likelihood),
        f"{prefix}_iterations": int(fit.iterations),
        f"{prefix}_customers": int(fit.n_customers),
        f"{prefix}_parameters": json_text(asdict(fit.params)),
        f"{prefix}_message": fit.message,
    }


def backtest_metadata(transactions: pd.DataFrame, as_of, holdout_weeks: int) -> dict[str, Any]:
    """Fit up to as_of minus the holdout, forecast the holdout, and say how close the forecast came."""
    calibration_end = pd.Timestamp(as_of) - pd.Timedelta(weeks=holdout_weeks)
    if not (transactions["occurred_at"] <= calibration_end).any():
        return {"backtest": f"no purchases before {calibration_end.date()}: nothing to backtest"}
    result = backtest_bgnbd(transactions, calibration_end, pd.Timestamp(as_of))
    return {
        "backtest_calibration_end": str(calibration_end.date()),
        "backtest_holdout_weeks": float(result.holdout_periods),
        "backtest_customers": len(result.per_customer),
        "backtest_mae": result.mae,
        "backtest_rmse": result.rmse,
        "backtest_total_predicted": result.total_predicted,
        "backtest_total_actual": result.total_actual,
        "backtest_correlation": result.correlation,
        **fit_metadata("backtest_bgnbd", result.fit),
    }


@dg.asset(
    key=USER_CLV,
    deps=[ORDERS_AS_OF, USER_CONSENTS],
    group_name="ml",
    kinds={"python"},
    description="P(alive), churn risk and expected value over a horizon per buyer (BG/NBD + Gamma-Gamma).",
)
def user_clv(huaxiang: HuaxiangResource, config: UserClvConfig) -> dg.MaterializeResult:
    """Fit BG/NBD and Gamma-Gamma on paid orders up to the as-of date and score every consented buyer.

    The models (and the backtest) are fitted on at most `fit_sample_customers` buyers, picked by hash; every
    buyer is then scored a batch of whole customers at a time.
    """
    as_of = huaxiang.as_of_date()
    buyers, expected_value, p_alive = 0, 0.0, 0.0
    bands = pd.Series(dtype="int64")
    with huaxiang.connect() as conn:
        sample = conn.execute(clv_sample_sql(config.fit_sample_customers)).df()
        if sample.empty:
            replace_table(conn, "ml.user_clv", empty_clv_table())
            return dg.MaterializeResult(metadata={"buyers_scored": 0, "note": "no paid orders to learn from"})
        fit_summary = rfm_summary(sample, as_of)
        bgnbd = fit_bgnbd(fit_summary)
        gamma_gamma = fit_gamma_gamma(fit_summary)
        with batch_writer(conn) as writer:
            batches = iter_frames(conn, ORDERED_TRANSACTIONS_SQL, config.batch_size)
            for transactions in whole_groups(batches, "customer_id"):
                summary = rfm_summary(transactions, as_of)
                scores = score_customers(
                    summary,
                    bgnbd.params,
                    gamma_gamma.params,
                    horizon=config.horizon_weeks,
                    discount_rate=config.weekly_discount_rate,
                    cut_points=(config.medium_churn_risk_from, config.high_churn_risk_from),
                )
                table = clv_table(summary, scores, config.horizon_weeks)
                writer.append("ml.user_clv", table)
                buyers += len(table)
                expected_value += float(table["expected_value"].sum())
                p_alive += float(table["p_alive"].sum())
                bands = bands.add(table["churn_risk_band"].value_counts(), fill_value=0)
    band_table = bands.astype("int64").rename_axis("churn_risk_band").reset_index(name="buyers")
    return dg.MaterializeResult(
        metadata={
            "buyers_scored": buyers,
            "buyers_in_fit_sample": len(fit_summary),
            "horizon_weeks": float(config.horizon_weeks),
            "total_expected_value": expected_value,
            "mean_p_alive": p_alive / buyers,
            "churn_risk_bands": markdown_table(band_table.sort_values("buyers", ascending=False, kind="stable")),
            **fit_metadata("bgnbd", bgnbd),
            **fit_metadata("gamma_gamma", gamma_gamma),
            **backtest_metadata(sample, as_of, config.holdout_weeks),
        }
    )


@dg.asset_check(
    asset=USER_CLV,
    name="bgnbd_converged",
    description="The BG/NBD and Gamma-Gamma fits behind churn risk and CLV reached an optimum.",
)
def bgnbd_converged(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    metadata = latest_metadata(context, USER_CLV)
    converged = {name: metadata.get(f"{name}_converged") for name in ("bgnbd", "gamma_gamma")}
    return dg.AssetCheckResult(
        passed=converged["bgnbd"] is True,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "bgnbd_converged": str(converged["bgnbd"]),
            "gamma_gamma_converged": str(converged["gamma_gamma"]),
            "bgnbd_message": str(metadata.get("bgnbd_message", "no BG/NBD fit recorded")),
        },
    )


# ---------------------------------------------------------------- association rules

PAID_BASKETS_SQL = """
select items.order_id as basket_id, items.product_id, items.category, products.product_name
from marts.fct_order_items as items
inner join intermediate.int_orders_as_of as orders on orders.order_id = items.order_id
left join marts.dim_products as products on products.product_id = items.product_id
where orders.is_paid
"""


RULE_LEVELS = {"product": "product_id", "category": "category"}


class AssociationRulesConfig(dg.Config):
    min_support_category: float = 0.01
    min_support_product: float = 0.002
    min_confidence: float = 0.1
    min_lift: float = 1.0
    max_itemset_size: int = 3


def level_rules(
    baskets: pd.DataFrame,
    level: str,
    min_support: float,
    min_confidence: float,
    min_lift: float,
    max_len: int,
) -> tuple[pd.DataFrame, int]:
    """Rules between the products or categories of baskets, and how many baskets they were mined from."""
    lines = baskets[["basket_id", RULE_LEVELS[level]]].rename(columns={RULE_LEVELS[level]: "item"}).dropna()
    n_baskets = lines["basket_id"].nunique()
    itemsets = frequent_itemsets(lines, min_support, max_len)
    # Without baskets there are no itemsets, so any positive count yields the (empty, typed) rule table.
    rules = association_rules(itemsets, max(n_baskets, 1), min_confidence, min_lift)
    return rules.assign(level=level), n_baskets


def describe_rule_sides(side: pd.Series, names: Mapping[str, str]) -> pd.Series:
    """Item ids of one rule side in readable names (the id itself where no name is known)."""
    return side.map(lambda items: ITEM_SEPARATOR.join(names.get(i, i) for i in items.split(ITEM_SEPARATOR)))


def with_descriptions(rules: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """'A + B → C' in product names (categories are already readable)."""
    antecedent = describe_rule_sides(rules["antecedent"], names)
    consequent = describe_rule_sides(rules["consequent"], names)
    return rules.assign(description=antecedent + " → " + consequent)


@dg.asset(
    key=ASSOCIATION_RULES,
    deps=[ORDER_ITEMS, ORDERS_AS_OF, DIM_PRODUCTS],
    group_name="ml",
    kinds={"python"},
    description="'Who buys A also buys C' rules between products and between categories, from paid baskets.",
)
def association_rules_asset(
    huaxiang: HuaxiangResource, config: AssociationRulesConfig
) -> dg.MaterializeResult:
    """Apriori over paid baskets as of the run's date, at product and at category level."""
    with huaxiang.connect() as conn:
        baskets = conn.execute(PAID_BASKETS_SQL).df()
        names = dict(
            baskets.dropna(subset=["product_name"])[["product_id", "product_name"]]
            .drop_duplicates()
            .to_numpy()
        )
        thresholds = {"product": config.min_support_product, "category": config.min_support_category}
        per_level, metadata = [], {}
        for level, min_support in thresholds.items():
            rules, n_baskets = level_rules(
                baskets, level, min_support, config.min_confidence, config.min_lift, config.max_itemset_size
            )
            per_level.append(rules)
            metadata[f"{level}_rules"] = len(rules)
            metadata[f"{level}_baskets"] = n_baskets
        rules = with_descriptions(pd.concat(per_level, ignore_index=True), names)
        rules = rules[["level", *rules.columns.drop("level")]]
        replace_table(conn, "ml.association_rules", rules)
    top = rules.sort_values("lift", ascending=False, kind="stable")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "top_product_rules": markdown_records(
                top[top["level"] == "product"][["description", "support", "confidence", "lift"]], 10
            ),
            "top_category_rules": markdown_records(
                top[top["level"] == "category"][["description", "support", "confidence", "lift"]], 10
            ),
        }
    )


# ---------------------------------------------------------------- recommendations

INTERACTIONS_SQL = """
select user_key, product_id, case event_name when 'Product Viewed' then 'view' else 'cart' end as kind,
       occurred_at, 1.0 as weight
from intermediate.int_events_as_of
where event_name in ('Product Viewed', 'Product Added') and product_id is not null
union all
select orders.user_key, items.product_id, 'purchase' as kind, orders.ordered_at as occurred_at, 1.0 as weight
from marts.fct_order_items as items
inner join intermediate.int_orders_as_of as orders on orders.order_id = items.order_id
where orders.is_paid and orders.user_key is not null
"""

PAID_ITEMS_SQL = """
select orders.user_key, items.order_id as basket_id, items.product_id, orders.ordered_at
from marts.fct_order_items as items
inner join intermediate.int_orders_as_of as orders on orders.order_id = items.order_id
where orders.is_paid and orders.user_key is not null
"""

PERSONALIZATION_SQL = """
select features.user_key, coalesce(consents.has_personalization_consent, true) as has_personalization_consent
from marts.user_features as features
left join intermediate.int_user_consents as consents on consents.user_key = features.user_key
"""


class RecommendationsConfig(dg.Config):
    top_n: int = 10
    view_weight: float = 0.2
    cart_weight: float = 0.5
    purchase_weight: float = 1.0
    half_life_days: float | None = None


@dg.asset(
    key=RECOMMENDATIONS,
    deps=[EVENTS_AS_OF, ORDERS_AS_OF, ORDER_ITEMS, USER_FEATURES, USER_CONSENTS],
    group_name="ml",
    kinds={"python"},
    description="Top products per person with personalization consent, never one they already bought.",
)
def recommendations(huaxiang: HuaxiangResource, config: RecommendationsConfig) -> dg.MaterializeResult:
    """Item-to-item similarity from views, carts and purchases, with popular items as the fallback."""
    # End of the as-of day in the business timezone, as naive UTC like the warehouse's timestamps.
    day_end = pd.Timestamp(huaxiang.as_of_date() + timedelta(days=1), tz=huaxiang.timezone).tz_convert("UTC")
    weights = {"view": config.view_weight, "cart": config.cart_weight, "purchase": config.purchase_weight}
    with huaxiang.connect() as conn:
        interactions = conn.execute(INTERACTIONS_SQL).df()
        paid_items = conn.execute(PAID_ITEMS_SQL).df()
        people = conn.execute(PERSONALIZATION_SQL).df()
        eligible = people.loc[people["has_personalization_consent"].astype(bool), "user_key"]
        ranked = recommend(
            interactions,
            paid_items[["user_key", "product_id"]],
            eligible,
            n=config.top_n,
            kind_weights=weights,
            half_life_days=config.half_life_days,
            as_of=day_end,
        )
        replace_table(conn, "ml.recommendations", ranked)
    # Measured on the people who get recommendations: their last basket held out, the rest to learn from.
    evaluated_baskets = paid_items[paid_items["user_key"].isin(eligible)]
    evaluation = evaluate_holdout(evaluated_baskets, k=config.top_n, half_life_days=config.half_life_days)
    reasons = ranked["reason"].value_counts().rename_axis("reason").reset_index(name="rows")
    return dg.MaterializeResult(
        metadata={
            "people_recommended": int(ranked["user_key"].nunique()),
            "rows": len(ranked),
            "people_without_personalization_consent": int(len(people) - len(eligible)),
            "reasons": markdown_table(reasons),
            **{name: float(value) for name, value in evaluation.items() if name != "users_evaluated"},
            "holdout_users_evaluated": int(evaluation["users_evaluated"]),
        }
    )


@dg.asset_check(
    asset=RECOMMENDATIONS,
    name="recommendations_beat_popularity",
    description="On each repeat buyer's held-out last basket, the recommender hits at least as often as "
    "recommending the most popular items.",
)
def recommendations_beat_popularity(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    metadata = latest_metadata(context, RECOMMENDATIONS)
    hit_rate, baseline = metadata.get("hit_rate"), metadata.get("baseline_hit_rate")
    measured = all(value is not None and not math.isnan(value) for value in (hit_rate, baseline))
    return dg.AssetCheckResult(
        passed=bool(measured and hit_rate >= baseline),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"hit_rate": str(hit_rate), "baseline_hit_rate": str(baseline)},
    )


ml_model_assets: list = [user_clusters, personas, user_clv, association_rules_asset, recommendations]
ml_model_checks: list = [clusters_not_degenerate, bgnbd_converged, recommendations_beat_popularity]
