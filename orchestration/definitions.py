"""The one entry point: every asset, check, resource, job and schedule of Huaxiang."""

import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.activation import activation_assets
from orchestration.checks import gx_checks, sql_checks
from orchestration.dbt_assets import dbt_layers
from orchestration.identity_assets import identity_resolution
from orchestration.landing_assets import every_landed_record_accounted_for, landing_assets
from orchestration.ml import user_lifecycle, user_rfm, user_tags
from orchestration.ml_models import ml_model_assets, ml_model_checks
from orchestration.privacy import privacy_assets, privacy_checks
from orchestration.project import huaxiang_dbt_project
from orchestration.report import report
from orchestration.resources import HuaxiangResource
from orchestration.serving import build_published_warehouse
from orchestration.settings import Settings, load_settings

DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

daily_refresh_job = dg.define_asset_job(
    "daily_refresh_job",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    description="Ingest new landed files and rebuild everything downstream, checks included.",
)

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh_schedule",
    job=daily_refresh_job,
    cron_schedule="0 6 * * *",
    execution_timezone="Asia/Shanghai",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


PUBLISHED_TABLES = [key for layer in dbt_layers for key in layer.keys if key.path[0] == "marts"]
published_warehouse = build_published_warehouse(PUBLISHED_TABLES)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions bound to one landing folder and warehouse (the CLI and tests pass their own)."""
    return dg.Definitions(
        assets=[
            *landing_assets,
            *privacy_assets,
            *dbt_layers,
            identity_resolution,
            user_rfm,
            user_lifecycle,
            *ml_model_assets,
            user_tags,
            *activation_assets,
            published_warehouse,
            report,
        ],
        asset_checks=[
            every_landed_record_accounted_for,
            *gx_checks(settings),
            *sql_checks,
            *ml_model_checks,
            *privacy_checks,
        ],
        jobs=[daily_refresh_job],
        schedules=[daily_refresh_schedule],
        resources={
            "huaxiang": HuaxiangResource.from_settings(settings),
            "dbt": DbtCliResource(project_dir=huaxiang_dbt_project, dbt_executable=DBT_EXECUTABLE),
        },
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
