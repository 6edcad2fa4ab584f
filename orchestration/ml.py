"""Thin Dagster assets around the pure functions in ml_assets/: read features, score, write `ml.*`."""

from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.lifecycle import (
    LifecycleConfig,
    accuracy,
    append_history,
    classify_lifecycle,
    confusion_matrix,
    stage_transitions,
)
from ml_assets.rfm import score_rfm, segment_summary
from ml_assets.tags import catalogue_frame, evaluate_tags, expand_families, load_catalogue
from orchestration.resources import HuaxiangResource, replace_table, table_exists
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


@dg.asset(key=["ml", "user_rfm"], deps=[FEATURES, CONSENTS], group_name="ml", kinds={"python", "duckdb"})
def user_rfm(huaxiang: HuaxiangResource) -> dg.MaterializeResult:
    """RFM quintile scores, the 11 named segments, the Chinese 8 types and a value tier per buyer."""
    with huaxiang.connect() as conn:
        customers = conn.execute(
            f"select user_key, recency_days, frequency, monetary::double as monetary {CONSENTING_FEATURES}"
        ).df()
        scored = score_rfm(customers)
        replace_table(conn, "ml.user_rfm", scored)
    summary = segment_summary(scored)
    return dg.MaterializeResult(
        metadata={
            "buyers": int((scored["frequency"] > 0).sum()),
            "people": len(scored),
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

    def to_lifecycle_config(self) -> LifecycleConfig:
        return LifecycleConfig(**self.model_dump())


LIFECYCLE_FEATURES_SQL = f"""
select user_key, days_since_first_seen, days_since_last_activity, days_since_first_paid,
       recency_days as days_since_last_paid, frequency as paid_orders, median_order_interval_days
{CONSENTING_FEATURES}
"""


def planted_stage_accuracy(landing_dir: Path, conn, stages: pd.DataFrame) -> dict[str, dg.MetadataValue]:
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
    joined = truth.merge(keys, on="crm_user_id").merge(stages, on="user_key")
    matrix = confusion_matrix(joined, joined, predicted_column="lifecycle_stage_y", truth_column="lifecycle_stage_x")
    return {
        "planted_stage_accuracy": dg.MetadataValue.float(accuracy(matrix)),
        "planted_people_scored": dg.MetadataValue.int(len(joined)),
        "confusion_matrix": dg.MetadataValue.md(matrix.reset_index().to_markdown(index=False)),
    }


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
    """Lifecycle stage per person as of the run's date, appended to a history that keeps every run."""
    as_of = huaxiang.as_of_date()
    with huaxiang.connect() as conn:
        stages = classify_lifecycle(conn.execute(LIFECYCLE_FEATURES_SQL).df(), config.to_lifecycle_config())
        previous = (
            conn.execute("select * from ml.user_lifecycle_history").df()
            if table_exists(conn, "ml.user_lifecycle_history")
            else None
        )
        history = append_history(previous, stages[["user_key", "lifecycle_stage"]], as_of)
        replace_table(conn, "ml.user_lifecycle", stages)
        replace_table(conn, "ml.user_lifecycle_history", history)
        accuracy_metadata = planted_stage_accuracy(huaxiang.settings.landing_dir, conn, stages)
    earlier = sorted(d for d in pd.to_datetime(history["as_of_date"]).dt.date.unique() if d < as_of)
    transitions = stage_transitions(history, earlier[-1], as_of) if earlier else pd.DataFrame()
    yield dg.MaterializeResult(
        asset_key=["ml", "user_lifecycle"],
        metadata={
            "stages": markdown_table(stages["lifecycle_stage"].value_counts().rename_axis("stage").reset_index()),
            **accuracy_metadata,
        },
    )
    yield dg.MaterializeResult(
        asset_key=["ml", "user_lifecycle_history"],
        metadata={
            "runs_kept": len(earlier) + 1,
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
