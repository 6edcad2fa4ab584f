from pathlib import Path

from dagster_dbt import DbtProject

huaxiang_dbt_project = DbtProject(
    project_dir=Path(__file__).resolve().parents[1] / "dbt_project",
    profiles_dir=Path(__file__).resolve().parents[1] / "dbt_project",
)
huaxiang_dbt_project.prepare_if_dev()
