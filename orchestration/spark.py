"""Build the same dbt project on Spark from the same landed data (docs/scale-out.md).

DuckDB stays the landing and identity engine: the tables Python writes (the dbt sources: raw.*, identity.*,
ml.*) are exported to Parquet and registered as Spark tables, then `dbt build` runs on the `spark` target.
Needs the `spark` extra (`pip install -e '.[spark]'`) and Java 17.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from orchestration.settings import Settings, apply_settings, load_settings

SPARK_TARGET = "spark"
PROFILE_NAME = "huaxiang"
DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"


class SparkBuildError(RuntimeError):
    """A dbt command on Spark failed; the message carries the end of its log."""


@dataclass(frozen=True)
class ExportedTable:
    schema: str
    name: str
    location: str
    rows: int


@dataclass(frozen=True)
class SparkPaths:
    """Everything Spark writes lives beside the DuckDB file, so one run's folder holds both engines' state."""

    parquet_dir: Path
    dbt_target_dir: Path

    @classmethod
    def for_warehouse(cls, warehouse_path: Path) -> SparkPaths:
        folder = warehouse_path.parent
        return cls(parquet_dir=folder / "spark-sources", dbt_target_dir=folder / "spark-dbt-target")


def source_schemas(manifest: dict) -> list[str]:
    """The schemas dbt reads as sources are the ones Python writes; Spark needs a copy of each."""
    return sorted({source["schema"] for source in manifest["sources"].values()})


def parquet_column_sql(name: str, duckdb_type: str) -> str:
    """Naive UTC timestamps become instants (Spark TIMESTAMP, session zone UTC); JSON becomes plain text."""
    quoted = '"' + name.replace('"', '""') + '"'
    if duckdb_type == "TIMESTAMP":
        return f"{quoted} at time zone 'UTC' as {quoted}"
    if duckdb_type == "JSON":
        return f"cast({quoted} as varchar) as {quoted}"
    return quoted


def warehouse_tables(conn: duckdb.DuckDBPyConnection, schemas: list[str]) -> list[tuple[str, str]]:
    """Base tables of the given schemas, in a stable order."""
    return [
        (schema, name)
        for schema, name in conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and list_contains(?, table_schema) order by 1, 2",
            [schemas],
        ).fetchall()
    ]


def export_sources(warehouse_path: Path, schemas: list[str], parquet_dir: Path) -> list[ExportedTable]:
    """Copy every table of `schemas` from DuckDB to one Parquet folder per table (replacing older copies)."""
    exported = []
    with duckdb.connect(str(warehouse_path), read_only=True) as conn:
        for schema, name in warehouse_tables(conn, schemas):
            columns = conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, name],
            ).fetchall()
            folder = parquet_dir / schema / name
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            select_list = ", ".join(parquet_column_sql(column, data_type) for column, data_type in columns)
            target = str(folder / "part-0.parquet").replace("'", "''")
            query = f'select {select_list} from "{schema}"."{name}"'
            conn.execute(f"copy ({query}) to '{target}' (format parquet)")
            rows = conn.execute(f'select count(*) from "{schema}"."{name}"').fetchall()[0][0]
            exported.append(ExportedTable(schema, name, str(folder), rows))
    return exported


def use_spark_target(settings: Settings) -> None:
    """Export this run's paths and clock, and pick the spark target, for dbt (profiles.yml reads env vars)."""
    apply_settings(settings)
    os.environ["HUAXIANG_ENGINE"] = SPARK_TARGET
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def dbt_vars(settings: Settings) -> str:
    """The vars the DuckDB run passes (orchestration/dbt_assets.py), so both engines see one as-of day."""
    return json.dumps({"as_of": settings.as_of_date().isoformat(), "timezone": settings.timezone})


def run_dbt(settings: Settings, arguments: list[str]):
    """Run one dbt command on the spark target in this process.

    dbt-spark's session method starts Spark inside the calling process, so every command of a run (and the
    reads after it) shares one JVM and one embedded metastore: starting Spark costs seconds, and a second
    process could not open the metastore while this one holds it.
    """
    from dbt.cli.main import dbtRunner

    use_spark_target(settings)
    paths = SparkPaths.for_warehouse(settings.warehouse_path)
    command = [
        *arguments,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target",
        SPARK_TARGET,
        "--target-path",
        str(paths.dbt_target_dir),
    ]
    outcome = dbtRunner().invoke(command)
    if not outcome.success:
        raise SparkBuildError(f"`dbt {arguments[0]}` on Spark failed: {describe_failures(outcome)}")
    return outcome.result


def describe_failures(outcome) -> str:
    """The failed nodes and their messages, or the exception dbt raised."""
    if outcome.exception is not None:
        return str(outcome.exception)
    failures = [
        f"{result.node.unique_id}: {result.message}"
        for result in getattr(outcome.result, "results", [])
        if str(result.status) in ("error", "fail", "runtime error")
    ]
    return "; ".join(failures) or "no failed node reported"


def parse_manifest(settings: Settings) -> dict:
    """Parse the project for the spark target and return its manifest (models added later are included)."""
    run_dbt(settings, ["parse"])
    manifest_path = SparkPaths.for_warehouse(settings.warehouse_path).dbt_target_dir / "manifest.json"
    return json.loads(manifest_path.read_text())


def register_tables(settings: Settings, tables: list[ExportedTable]) -> None:
    """Create a Spark table over each Parquet folder, through dbt so any Spark target (thrift, http) works."""
    arguments = {"tables": [{"schema": t.schema, "name": t.name, "location": t.location} for t in tables]}
    run_dbt(settings, ["run-operation", "register_parquet_tables", "--args", json.dumps(arguments)])


def prepare_spark_sources(settings: Settings, manifest: dict | None = None) -> list[ExportedTable]:
    """Export the DuckDB sources and register them in Spark; the dbt models can then build there."""
    manifest = manifest or parse_manifest(settings)
    paths = SparkPaths.for_warehouse(settings.warehouse_path)
    tables = export_sources(settings.warehouse_path, source_schemas(manifest), paths.parquet_dir)
    register_tables(settings, tables)
    return tables


def build_on_spark(settings: Settings, select: str | None = None):
    """`dbt build` (models and their tests) on Spark with the same vars as the DuckDB run."""
    arguments = ["build", "--vars", dbt_vars(settings)]
    if select:
        arguments += ["--select", select]
    return run_dbt(settings, arguments)


def spark_session_config(settings: Settings) -> dict[str, str]:
    """The spark target's server_side_parameters as dbt renders them, so Python reads the same metastore."""
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer

    use_spark_target(settings)
    raw_profiles = read_profile(str(DBT_PROJECT_DIR))
    profile = Profile.from_raw_profiles(
        raw_profiles, PROFILE_NAME, ProfileRenderer({}), target_override=SPARK_TARGET
    )
    return dict(profile.credentials.server_side_parameters)


def spark_session(settings: Settings):
    """The local SparkSession of the spark target (the one dbt started in this process, if it did)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_session_config(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.spark", description=__doc__)
    parser.add_argument("--warehouse", help="DuckDB file a `huaxiang run` wrote (HUAXIANG_WAREHOUSE)")
    parser.add_argument("--as-of", dest="as_of", help="YYYY-MM-DD, the same as-of day as the DuckDB run")
    parser.add_argument("--select", help="dbt selection to build (default: every model)")
    parser.add_argument("--sources-only", action="store_true", help="export and register, do not build")
    args = parser.parse_args(argv)
    if args.warehouse:
        os.environ["HUAXIANG_WAREHOUSE"] = str(Path(args.warehouse).resolve())
    if args.as_of:
        os.environ["HUAXIANG_AS_OF"] = args.as_of
    settings = load_settings()
    for table in prepare_spark_sources(settings):
        print(json.dumps(asdict(table)))
    if not args.sources_only:
        build_on_spark(settings, args.select)
    return 0


if __name__ == "__main__":
    sys.exit(main())
