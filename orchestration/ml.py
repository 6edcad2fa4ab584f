"""Thin Dagster assets around the pure functions in ml_assets/: read features, score, write `ml.*`."""

import math
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.lifecycle import (
    NO_STAGE,
    LifecycleConfig,
    accuracy,
    classify_lifecycle,
    confusion_matrix,
    order_transitions,
)
from ml_assets.rfm import (
    SCORE_BINS,
    MeasureCutoffs,
    RfmPopulation,
    score_rfm,
    segment_totals,
    summarise_segments,
)
from ml_assets.tags import catalogue_frame, evaluate_tags, expand_families, load_catalogue
from orchestration.resources import DEFAULT_BATCH_SIZE, HuaxiangResource, batch_writer, iter_frames, replace_table
from orchestration.settings import REPO_ROOT

FEATURES = dg.AssetKey(["marts", "user_features"])
PROFILE_BASE = dg.AssetKey(["intermediate", "int_user_profile_base"])
CONSENTS = dg.AssetKey(["intermediate", "int_user_consents"])
# Scores are profiling: people who withdrew profiling consent are not scored (they are counted in the profile).
CONSENTING_FEATURES = (
    "from marts.user_features join intermediate.int_user_consents using (user_key) where has_profiling_consent "
)


def markdown_table(frame: pd.DataFrame, max_rows: int = 30) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(max_rows).to_markdown(index=False) if len(frame) else "(empty)")


RFM_SQL = f"select user_key, recency_days, frequency, monetary::double as monetary {CONSENTING_FEATURES}"
RFM_MEASURES = ("recency_days", "frequency", "monetary")


class UserRfmConfig(dg.Config):
    batch_size: int = DEFAULT_BATCH_SIZE


def warehouse_rfm_population(conn, source_sql: str, batch_size: int) -> RfmPopulation:
    """RFM cutoffs over every buyer of `source_sql`, computed in the warehouse; equal to rfm_population.

    The bins are rfm's rule in SQL: rank() is the min-rank, and ceil(5 (rank - 1) / span) is taken in integers.
    Totals are exact like rfm.exact_total: integers (and whole-number doubles) are summed as HUGEINT; other
    doubles are streamed through math.fsum, whose correctly rounded sum does not depend on batching.
    """
    buyers = f"select * from ({source_sql}) where coalesce(frequency, 0) > 0"
    middle = (SCORE_BINS + 1) // 2
    measures = []
    for column in RFM_MEASURES:
        ranked = f"select {column} as v, rank() over (order by {column}) as r from ({buyers})"
        cutoffs = conn.execute(
            f"""
            with ranked as ({ranked}), spans as (select max(r) - 1 as span from ranked)
            select case when span = 0 then {middle}
                        else greatest(1, ({SCORE_BINS} * (r - 1) + span - 1) // span) end as bin,
                   max(v) as upper
            from ranked cross join spans group by bin order by bin
            """
        ).fetchall()
        count, whole, whole_total = conn.execute(
            f"select count(*), coalesce(bool_and(v = round(v) and abs(v) < 2 ** 53), true),"
            f" sum(case when v = round(v) and abs(v) < 2 ** 53 then v::hugeint end)"
            f" from (select {column} as v from ({buyers}))"
        ).fetchall()[0]
        if whole:
            total = int(whole_total or 0)
        else:
            values = iter_frames(conn, f"select {column} as v from ({buyers})", batch_size)
            total = math.fsum(value for frame in values for value in frame["v"].to_numpy(dtype="float64"))
        measures.append(
            MeasureCutoffs(tuple(u for _, u in cutoffs), tuple(int(b) for b, _ in cutoffs), int(count), total)
        )
    return RfmPopulation(*measures)


@dg.asset(key=["ml", "user_rfm"], deps=[FEATURES, CONSENTS], group_name="ml", kinds={"python", "duckdb"})
def user_rfm(huaxiang: HuaxiangResource, config: UserRfmConfig) -> dg.MaterializeResult:
    """RFM quintile scores, the 11 named segments, the Chinese 8 types and a value tier per buyer.

    Cutoffs over all buyers come from the warehouse first, then people are scored a batch at a time.
    """
    people, totals = 0, None
    with huaxiang.connect() as conn:
        population = warehouse_rfm_population(conn, RFM_SQL, config.batch_size)
        with batch_writer(conn) as writer:
            for customers in iter_frames(conn, RFM_SQL, config.batch_size):
                scored = score_rfm(customers, population)
                writer.append("ml.user_rfm", scored)
                people += len(scored)
                batch_totals = segment_totals(scored)
                totals = batch_totals if totals is None else totals + batch_totals
    summary = summarise_segments(totals)
    return dg.MaterializeResult(
        metadata={
            "buyers": int(summary["customers"].sum()),
            "people": people,
            "segments": markdown_table(summary),
        }
    )


class LifecycleAssetConfig(dg.Config):
    """The lifecycle thresholds, tunable in the Dagster UI; defaults come from LifecycleConfig."""

    new_days: int = LifecycleConfig.new_days
    mature_min_orders: int = LifecycleConfig.mature_min_orders
    declining_min_days: int = LifecycleConfig.declining_min_days
    declining_interval_multiple: float = LifecycleConfig.declining_interval_multiple
    churn_days: int = LifecycleConfig.churn_days

    batch_size: int = DEFAULT_BATCH_SIZE

    def to_lifecycle_config(self) -> LifecycleConfig:
        return LifecycleConfig(**self.model_dump(exclude={"batch_size"}))


LIFECYCLE_FEATURES_SQL = f"""
select user_key, days_since_first_seen, days_since_last_activity, days_since_first_paid,
       recency_days as days_since_last_paid, frequency as paid_orders, median_order_interval_days
{CONSENTING_FEATURES}
"""


def planted_stage_accuracy(landing_dir: Path, conn) -> dict[str, dg.MetadataValue]:
    """On generated data, score stages against the planted truth (clear-cut people); nothing otherwise."""
    truth_file = landing_dir / "_truth" / "persons.csv"
    if not truth_file.exists():
        return {}
    truth = pd.read_csv(truth_file, dtype=str, keep_default_na=False)
    truth = truth[(truth["is_clear_cut"] == "true") & (truth["crm_user_id"] != "")]
    keys = conn.execute(
        "select identifier_value as crm_user_id, user_key from identity.identity_map"
        " where identifier_type = 'user_id' and not is_shared"
    ).df()
    stages = conn.execute("select user_key, lifecycle_stage from ml.user_lifecycle").df()
    joined = truth.merge(keys, on="crm_user_id").merge(stages, on="user_key")
    matrix = confusion_matrix(joined, joined, predicted_column="lifecycle_stage_y", truth_column="lifecycle_stage_x")
    return {
        "planted_stage_accuracy": dg.MetadataValue.float(accuracy(matrix)),
        "planted_people_scored": dg.MetadataValue.int(len(joined)),
        "confusion_matrix": dg.MetadataValue.md(matrix.reset_index().to_markdown(index=False)),
    }


def append_history_in_warehouse(conn, as_of: date) -> None:
    """append_history in SQL: replace the as-of date's rows of ml.user_lifecycle_history by ml.user_lifecycle."""
    conn.execute(
        "create table if not exists ml.user_lifecycle_history"
        " (user_key varchar, as_of_date date, lifecycle_stage varchar)"
    )
    conn.execute("delete from ml.user_lifecycle_history where as_of_date::date = ?", [as_of])
    conn.execute(
        "insert into ml.user_lifecycle_history (user_key, as_of_date, lifecycle_stage)"
        " select user_key, ?::date, lifecycle_stage from ml.user_lifecycle order by user_key",
        [as_of],
    )


def transitions_in_warehouse(conn, from_date: date, to_date: date) -> pd.DataFrame:
    """stage_transitions counted in SQL over ml.user_lifecycle_history (absent on one side is 'none')."""
    counts = conn.execute(
        f"""
        with before as (select user_key, lifecycle_stage from ml.user_lifecycle_history where as_of_date::date = $1),
        after as (select user_key, lifecycle_stage from ml.user_lifecycle_history where as_of_date::date = $2)
        select coalesce(before.lifecycle_stage, '{NO_STAGE}') as from_stage,
               coalesce(after.lifecycle_stage, '{NO_STAGE}') as to_stage, count(*) as users
        from before full outer join after on before.user_key = after.user_key
        group by all
        """,
        [from_date, to_date],
    ).df()
    return order_transitions(counts.astype({"from_stage": "str", "to_stage": "str", "users": "int64"}))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["ml", "user_lifecycle"], deps=[FEATURES, CONSENTS], group_name="ml", kinds={"python", "duckdb"}),
        dg.AssetSpec(
            ["ml", "user_lifecycle_history"],
            deps=[FEATURES, CONSENTS],
            group_name="ml",
            kinds={"python", "duckdb"},
        ),
    ]
)
def user_lifecycle(huaxiang: HuaxiangResource, config: LifecycleAssetConfig):
    """Lifecycle stage per person as of the run's date, appended to a history that keeps every run.

    People are classified a batch at a time; the history is updated in the warehouse, in the same transaction.
    """
    as_of = huaxiang.as_of_date()
    lifecycle_config = config.to_lifecycle_config()
    stage_counts = pd.Series(dtype="int64")
    with huaxiang.connect() as conn:
        with batch_writer(conn) as writer:
            for features in iter_frames(conn, LIFECYCLE_FEATURES_SQL, config.batch_size):
                stages = classify_lifecycle(features, lifecycle_config)
                writer.append("ml.user_lifecycle", stages)
                stage_counts = stage_counts.add(stages["lifecycle_stage"].value_counts(), fill_value=0)
            append_history_in_warehouse(writer.cursor, as_of)
        runs_before, previous_date = conn.execute(
            "select count(distinct as_of_date::date), max(as_of_date::date) from ml.user_lifecycle_history"
            " where as_of_date::date < ?",
            [as_of],
        ).fetchall()[0]
        transitions = transitions_in_warehouse(conn, previous_date, as_of) if runs_before else pd.DataFrame()
        accuracy_metadata = planted_stage_accuracy(huaxiang.settings.landing_dir, conn)
    stage_table = stage_counts.astype("int64").sort_values(ascending=False, kind="stable")
    yield dg.MaterializeResult(
        asset_key=["ml", "user_lifecycle"],
        metadata={
            "stages": markdown_table(stage_table.rename_axis("stage").rename("count").reset_index()),
            **accuracy_metadata,
        },
    )
    yield dg.MaterializeResult(
        asset_key=["ml", "user_lifecycle_history"],
        metadata={
            "runs_kept": int(runs_before) + 1,
            "transitions_since_previous_run": markdown_table(transitions),
        },
    )


class TagsConfig(dg.Config):
    catalogue_path: str = str(REPO_ROOT / "catalogue" / "tags.yml")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["ml", "user_tags"], deps=[PROFILE_BASE], group_name="ml", kinds={"python", "duckdb"}),
        dg.AssetSpec(["ml", "tag_catalogue"], deps=[PROFILE_BASE], group_name="ml", kinds={"python", "duckdb"}),
    ]
)
def user_tags(huaxiang: HuaxiangResource, config: TagsConfig):
    """Compile the YAML tag catalogue into (person, tag) rows; a bad rule fails naming its tag and line."""
    path = Path(config.catalogue_path)
    definitions = load_catalogue(path)
    with huaxiang.connect() as conn:
        tags = expand_families(conn, definitions, path.name)
        members = evaluate_tags(conn, tags, "intermediate.int_user_profile_base", path.name)
        catalogue = catalogue_frame(tags, members)
        replace_table(conn, "ml.user_tags", members)
        replace_table(conn, "ml.tag_catalogue", catalogue)
    yield dg.MaterializeResult(
        asset_key=["ml", "user_tags"],
        metadata={"rows": len(members), "people_tagged": int(members["user_key"].nunique())},
    )
    yield dg.MaterializeResult(
        asset_key=["ml", "tag_catalogue"],
        metadata={
            "tags": len(catalogue),
            "catalogue": markdown_table(catalogue[["tag", "label_zh", "label_en", "members"]], max_rows=60),
        },
    )
