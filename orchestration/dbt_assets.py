"""The dbt project as Dagster assets: model names are asset keys, folders set groups (dbt_project.yml).

The project is split into layers because Python assets sit between them (identity resolution reads the
intermediate identity evidence and the marts read its output); Dagster runs each layer as its own step.
"""

import json

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.project import huaxiang_dbt_project
from orchestration.resources import HuaxiangResource

DBT_LAYERS = {
    "dbt_staging": "path:models/staging path:models/intermediate/identity",
    "dbt_marts": (
        "path:models/marts/core path:models/intermediate/profile path:models/marts/features"
        " path:models/marts/kpi"
    ),
    "dbt_profile_base": "path:models/intermediate/profile_base",
    "dbt_profile": "path:models/marts/profile",
    "dbt_activation": "path:models/marts/activation",
}


def dbt_vars(huaxiang: HuaxiangResource) -> str:
    """Every dbt invocation sees the same as-of date and timezone as the Python assets."""
    return json.dumps({"as_of": huaxiang.as_of_date().isoformat(), "timezone": huaxiang.timezone})


class DbtBuildConfig(dg.Config):
    """`full_refresh` rebuilds the incremental models (events, orders) from every landed record."""

    full_refresh: bool = False


def dbt_build_args(huaxiang: HuaxiangResource, config: DbtBuildConfig) -> list[str]:
    return ["build", "--vars", dbt_vars(huaxiang), *(["--full-refresh"] if config.full_refresh else [])]


def build_dbt_layer(name: str, select: str) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=huaxiang_dbt_project.manifest_path, project=huaxiang_dbt_project, select=select, name=name
    )
    def _layer(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, huaxiang: HuaxiangResource, config: DbtBuildConfig
    ):
        yield from dbt.cli(dbt_build_args(huaxiang, config), context=context).stream()

    return _layer


dbt_layers = [build_dbt_layer(name, select) for name, select in DBT_LAYERS.items()]
