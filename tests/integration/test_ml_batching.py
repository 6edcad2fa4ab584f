"""The per-person ML assets give the same tables whether people come in one batch or in batches of 37."""

from dataclasses import dataclass

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ml_assets.lifecycle import classify_lifecycle
from ml_assets.rfm import score_rfm
from orchestration.ml import LIFECYCLE_FEATURES_SQL, RFM_SQL, user_lifecycle, user_rfm
from orchestration.ml_models import user_clusters, user_clv
from orchestration.resources import HuaxiangResource
from orchestration.settings import Settings

pytestmark = pytest.mark.integration

ASSETS = [user_rfm, user_lifecycle, user_clusters, user_clv]
TABLES = {
    "ml.user_rfm": ["user_key"],
    "ml.user_lifecycle": ["user_key"],
    "ml.user_lifecycle_history": ["as_of_date", "user_key"],
    "ml.user_clusters": ["user_key"],
    "ml.user_clv": ["user_key"],
}
BATCH = 37
SMALL_RUN = dg.RunConfig(
    {
        "ml__user_rfm": {"config": {"batch_size": BATCH}},
        "user_lifecycle": {"config": {"batch_size": BATCH}},
        "user_clusters": {"config": {"batch_size": BATCH, "fit_sample_size": 200, "selection_sample_size": 100}},
        "ml__user_clv": {"config": {"batch_size": BATCH, "fit_sample_customers": 150}},
    }
)


@dataclass
class BatchRuns:
    default: dict[str, pd.DataFrame]
    small: dict[str, pd.DataFrame]
    one_shot_rfm: pd.DataFrame
    one_shot_lifecycle: pd.DataFrame
    consenting_people: set[str]
    consenting_buyers: set[str]
    metadata: dict[str, dict]


def read_tables(settings: Settings) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        return {
            table: conn.execute(f"select * from {table}").df().sort_values(key, ignore_index=True)
            for table, key in TABLES.items()
        }


def metadata_by_asset(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        event.materialization.asset_key.to_user_string(): {
            name: value.value for name, value in event.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def batch_runs(pipeline_run, tmp_path_factory) -> BatchRuns:
    """The four assets with default settings, then with batches of 37 and small fit samples, on a copy."""
    root = tmp_path_factory.mktemp("ml_batching")
    settings = pipeline_run.private_copy(root)
    resources = {"huaxiang": HuaxiangResource.from_settings(settings)}
    default = dg.materialize(ASSETS, resources=resources)
    assert default.success
    default_tables = read_tables(settings)
    small = dg.materialize(ASSETS, resources=resources, run_config=SMALL_RUN)
    assert small.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        # What the assets computed before batching: the pure functions over the whole table read at once.
        one_shot_rfm = score_rfm(conn.execute(RFM_SQL).df())
        one_shot_lifecycle = classify_lifecycle(conn.execute(LIFECYCLE_FEATURES_SQL).df())
        consenting = conn.execute(
            "select features.user_key, features.frequency from marts.user_features as features"
            " left join intermediate.int_user_consents using (user_key)"
            " where coalesce(has_profiling_consent, true)"
        ).df()
    return BatchRuns(
        default=default_tables,
        small=read_tables(settings),
        one_shot_rfm=one_shot_rfm.sort_values("user_key", ignore_index=True),
        one_shot_lifecycle=one_shot_lifecycle.sort_values("user_key", ignore_index=True),
        consenting_people=set(consenting["user_key"]),
        consenting_buyers=set(consenting.loc[consenting["frequency"] > 0, "user_key"]),
        metadata=metadata_by_asset(small),
    )


def test_people_really_came_in_several_batches(batch_runs):
    assert len(batch_runs.default["ml.user_rfm"]) > 4 * BATCH
    assert batch_runs.metadata["ml/user_clusters"]["people_in_fit_sample"] == 200
    assert batch_runs.metadata["ml/user_clv"]["buyers_in_fit_sample"] == 150
    assert batch_runs.metadata["ml/user_clv"]["bgnbd_customers"] == 150


@pytest.mark.parametrize("table", ["ml.user_rfm", "ml.user_lifecycle", "ml.user_lifecycle_history"])
def test_rfm_and_lifecycle_do_not_depend_on_the_batch_size(batch_runs, table):
    pd.testing.assert_frame_equal(batch_runs.small[table], batch_runs.default[table])


def test_batched_rfm_and_lifecycle_equal_scoring_everyone_at_once(batch_runs):
    pd.testing.assert_frame_equal(batch_runs.small["ml.user_rfm"], batch_runs.one_shot_rfm)
    pd.testing.assert_frame_equal(batch_runs.small["ml.user_lifecycle"], batch_runs.one_shot_lifecycle)
    assert batch_runs.one_shot_rfm["m_score"].nunique() == 5


def test_clusters_assign_every_consenting_person_exactly_once(batch_runs):
    clusters = batch_runs.small["ml.user_clusters"]
    assert clusters["user_key"].is_unique
    assert set(clusters["user_key"]) == batch_runs.consenting_people
    metadata = batch_runs.metadata["ml/user_clusters"]
    assert metadata["people_clustered"] == len(clusters)
    assert clusters["cluster_id"].notna().all()


def test_clv_scores_every_consenting_buyer_once(batch_runs):
    small, default = batch_runs.small["ml.user_clv"], batch_runs.default["ml.user_clv"]
    assert small["user_key"].is_unique and set(small["user_key"]) == batch_runs.consenting_buyers
    assert small["user_key"].tolist() == default["user_key"].tolist()
    # The summaries do not depend on the sample; only the fitted parameters (and so the scores) may move.
    summary = ["user_key", "repeat_purchases", "recency_weeks", "tenure_weeks", "avg_repeat_spend"]
    pd.testing.assert_frame_equal(small[summary], default[summary])
    assert small["p_alive"].between(0, 1).all() and (small["expected_value"] >= 0).all()
    assert batch_runs.metadata["ml/user_clv"]["buyers_scored"] == len(small)
