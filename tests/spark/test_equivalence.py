"""The same dbt models on Spark give the same tables as on DuckDB, from the same landed data.

Run with `make test-spark` (needs the spark extra and Java 17). Every model in the manifest at run time is
covered, so models added later are compared without touching this file.
"""

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("pyspark", reason="needs the spark extra: pip install -e '.[dev,spark]'")

import duckdb  # noqa: E402

from orchestration import spark  # noqa: E402
from orchestration.cli import run_pipeline  # noqa: E402
from orchestration.generator import generate  # noqa: E402
from orchestration.settings import Settings  # noqa: E402
from tests.spark.fingerprint import compare_tables  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.timeout(2400)]

PEOPLE = 300
SEED = 5
RFM_COLUMNS = ("recency_days", "frequency", "monetary")


@dataclass
class EngineRuns:
    settings: Settings
    duckdb_success: bool
    manifest: dict
    models: dict[str, str]  # model name -> schema.table
    built_on_duckdb: list[str]
    spark_error: str | None

    def duckdb_table(self, relation: str):
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as conn:
            return conn.execute(f"select * from {relation}").to_arrow_table()


def model_relations(manifest: dict) -> dict[str, str]:
    """schema.table of every model dbt would build (ephemeral models have no table)."""
    return {
        node["name"]: f"{node['schema']}.{node['alias']}"
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"
    }


def existing_relations(warehouse_path: Path) -> set[str]:
    with duckdb.connect(str(warehouse_path), read_only=True) as conn:
        return {
            f"{schema}.{name}"
            for schema, name in conn.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> EngineRuns:
    root = tmp_path_factory.mktemp("spark_equivalence")
    landing = root / "landing"
    generate(people=PEOPLE, seed=SEED, out=landing, progress=False)
    as_of = date.fromisoformat(json.loads((landing / "_truth" / "summary.json").read_text())["as_of"])
    settings = Settings(
        landing_dir=landing,
        warehouse_path=root / "warehouse" / "huaxiang.duckdb",
        timezone="Asia/Shanghai",
        pii_salt="spark-equivalence-salt",
        as_of=as_of,
    )
    duckdb_success = run_pipeline(settings).success

    manifest = spark.parse_manifest(settings)
    models = model_relations(manifest)
    present = existing_relations(settings.warehouse_path)
    built_on_duckdb = sorted(name for name, relation in models.items() if relation in present)
    spark.prepare_spark_sources(settings, manifest)
    try:
        spark.build_on_spark(settings, select=" ".join(built_on_duckdb))
        spark_error = None
    except spark.SparkBuildError as error:
        spark_error = str(error)
    return EngineRuns(settings, duckdb_success, manifest, models, built_on_duckdb, spark_error)


@pytest.fixture(scope="module")
def session(runs):
    return spark.spark_session(runs.settings)


def test_duckdb_pipeline_built_every_model(runs):
    missing = sorted(set(runs.models) - set(runs.built_on_duckdb))
    assert runs.duckdb_success and not missing, (runs.duckdb_success, missing)


def test_every_model_and_its_tests_pass_on_spark(runs):
    assert runs.spark_error is None, runs.spark_error


def test_every_model_matches_duckdb(runs, session):
    differences = {}
    for name in runs.built_on_duckdb:
        relation = runs.models[name]
        if not session.catalog.tableExists(relation):
            differences[name] = ["not built on Spark"]
            continue
        found = compare_tables(runs.duckdb_table(relation), session.table(relation).toArrow())
        if found:
            differences[name] = found
    matched = sorted(set(runs.built_on_duckdb) - set(differences))
    print(f"\n{len(matched)} of {len(runs.built_on_duckdb)} models match DuckDB: {', '.join(matched)}")
    assert runs.built_on_duckdb and not differences, differences


def test_rfm_columns_are_exactly_equal_per_person(runs, session):
    on_duckdb = {
        row["user_key"]: tuple(row[column] for column in RFM_COLUMNS)
        for row in runs.duckdb_table("marts.user_features").to_pylist()
    }
    query = f"select user_key, {', '.join(RFM_COLUMNS)} from marts.user_features"
    on_spark = {
        row["user_key"]: tuple(row[column] for column in RFM_COLUMNS) for row in session.sql(query).collect()
    }
    assert len(on_duckdb) > PEOPLE / 2
    assert sum(1 for _, frequency, _ in on_duckdb.values() if frequency > 0) > PEOPLE / 10
    assert on_spark == on_duckdb
