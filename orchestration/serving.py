"""Publish a read-only copy of the BI-facing schemas, swapped in atomically after a good run."""

import os
from pathlib import Path

import dagster as dg
import duckdb

from orchestration.resources import HuaxiangResource

PUBLISHED_SCHEMAS = ("marts", "quarantine")


def publish_snapshot(warehouse: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
    """Copy the published schemas into a new file, then rename it over the old one (atomic on POSIX).

    A reader holding the old file open keeps reading the old snapshot; new readers see the new one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".tmp")
    staging.unlink(missing_ok=True)
    tables = warehouse.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_catalog = current_database() and table_type = 'BASE TABLE' "
        f"and table_schema in {PUBLISHED_SCHEMAS} order by 1, 2"
    ).fetchall()
    counts: dict[str, int] = {}
    warehouse.execute("attach ? as publish_target", [str(staging)])
    try:
        for schema, _ in {(s, None) for s, _ in tables}:
            warehouse.execute(f"create schema publish_target.{schema}")
        for schema, table in tables:
            warehouse.execute(
                f"create table publish_target.{schema}.{table} as select * from {schema}.{table}"
            )
            counts[f"{schema}.{table}"] = warehouse.execute(
                f"select count(*) from publish_target.{schema}.{table}"
            ).fetchall()[0][0]
    finally:
        warehouse.execute("detach publish_target")
    os.replace(staging, target)
    return counts


def build_published_warehouse(published: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The serving asset waits for every published table, so a failure anywhere upstream stops it."""

    @dg.asset(name="published_warehouse", group_name="serving", kinds={"duckdb"}, deps=published)
    def _publish(context: dg.AssetExecutionContext, huaxiang: HuaxiangResource) -> dg.MaterializeResult:
        """The read-only DuckDB file BI tools open; replaced only when everything upstream succeeded."""
        target = huaxiang.settings.published_path
        with huaxiang.connect() as conn:
            counts = publish_snapshot(conn, target)
        context.log.info(f"published {len(counts)} tables to {target}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(target)),
                "tables": dg.MetadataValue.md(
                    "| table | rows |\n|---|---|\n" + "\n".join(f"| {t} | {n} |" for t, n in counts.items())
                ),
            }
        )

    return _publish
