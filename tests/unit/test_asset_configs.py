"""Asset configs shown in the Dagster UI map one-to-one onto the pure functions' configs."""

from ml_assets.clustering import ClusteringConfig
from ml_assets.lifecycle import LifecycleConfig
from orchestration.ml import LifecycleAssetConfig
from orchestration.ml_models import UserClustersConfig


def test_lifecycle_defaults_and_overrides_reach_the_classifier():
    assert LifecycleAssetConfig().to_lifecycle_config() == LifecycleConfig()
    assert LifecycleAssetConfig(churn_days=90, new_days=14).to_lifecycle_config() == LifecycleConfig(
        churn_days=90, new_days=14
    )


def test_clustering_defaults_and_overrides_reach_the_model():
    assert UserClustersConfig().to_clustering_config() == ClusteringConfig()
    assert UserClustersConfig(max_k=6, random_state=3).to_clustering_config() == ClusteringConfig(
        max_k=6, random_state=3
    )


def test_batch_and_sample_sizes_are_run_config_with_one_default():
    from orchestration.ml import UserRfmConfig
    from orchestration.ml_models import UserClvConfig
    from orchestration.resources import DEFAULT_BATCH_SIZE

    assert LifecycleAssetConfig(batch_size=37).to_lifecycle_config() == LifecycleConfig()
    small = UserClustersConfig(batch_size=37, fit_sample_size=300, selection_sample_size=100)
    expected = ClusteringConfig(batch_size=37, fit_sample_size=300, selection_sample_size=100)
    assert small.to_clustering_config() == expected
    assert UserRfmConfig().batch_size == UserClvConfig().batch_size == DEFAULT_BATCH_SIZE
    assert ClusteringConfig.batch_size == DEFAULT_BATCH_SIZE
    assert UserClvConfig().fit_sample_customers == 200_000
