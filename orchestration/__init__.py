"""Huaxiang orchestration: landing ingestion, the dbt project and Python assets, wired into Dagster."""
