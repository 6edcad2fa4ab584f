"""Right to erasure end to end: each identifier type, nothing left anywhere, later data suppressed."""

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.cli import prepare_dbt_manifest
from orchestration.generator import generate
from orchestration.landing_assets import landing_assets
from orchestration.pii import hash_phone
from orchestration.privacy import (
    ERASURE_LOG,
    ErasureFirstTranslator,
    landed_records_balance_after_erasure,
    leftover_mentions,
    privacy_assets,
    privacy_checks,
)
from orchestration.resources import HuaxiangResource
from orchestration.settings import Settings, apply_settings
from tests.integration.conftest import SALT, settings_for

IDENTIFIER_TYPES = ("user_id", "phone", "openid", "unionid", "anonymous_id")


def pick_people(truth_dir: Path) -> pd.DataFrame:
    """One linkable person per identifier type (different people), with the identifier to request by."""
    identifiers = pd.read_csv(truth_dir / "identifiers.csv", dtype=str, keep_default_na=False)
    identifiers = identifiers[identifiers["linkable"] == "true"]
    chosen, used = [], set()
    for kind in IDENTIFIER_TYPES:
        candidates = identifiers[
            (identifiers["identifier_type"] == kind) & ~identifiers["person_id"].isin(used)
        ]
        row = candidates.iloc[len(candidates) // 3]
        used.add(row["person_id"])
        chosen.append(row)
    return pd.DataFrame(chosen).reset_index(drop=True)


def land_requests(landing: Path, people: pd.DataFrame, name: str = "requests.csv") -> None:
    folder = landing / "erasure_requests"
    folder.mkdir(exist_ok=True)
    pd.DataFrame(
        {
            "request_id": [f"erase-{i}" for i in range(len(people))],
            "identifier_type": people["identifier_type"],
            "identifier_value": people["identifier_value"],
            "requested_at": "2026-06-29T10:00:00+08:00",
        }
    ).to_csv(folder / name, index=False)


def person_values(truth_dir: Path, people: pd.DataFrame, salt: str) -> list[str]:
    """Every identifier of the chosen people as the warehouse would hold it (phones as their hash)."""
    identifiers = pd.read_csv(truth_dir / "identifiers.csv", dtype=str, keep_default_na=False)
    mine = identifiers[identifiers["person_id"].isin(people["person_id"])]
    return [
        hash_phone(value, salt) if kind == "phone" else value
        for kind, value in zip(mine["identifier_type"], mine["identifier_value"], strict=True)
    ] + [v for v in mine.loc[mine["identifier_type"] == "phone", "identifier_value"]]


def user_keys(warehouse: Path, values: list[str]) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "select distinct user_key from identity.identity_map"
                " where list_contains(?, identifier_value)",
                [values],
            ).fetchall()
        ]


def scan_file(path: Path, values: list[str]) -> pd.DataFrame:
    """Every table and column of a DuckDB file, cast to text, searched for the values."""
    with duckdb.connect(str(path), read_only=True) as conn:
        return leftover_mentions(conn, values)


def materialize_landing_and_erasure(settings: Settings) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*landing_assets, *privacy_assets, landed_records_balance_after_erasure],
        resources={"huaxiang": HuaxiangResource.from_settings(settings)},
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def erased_copy(tmp_path_factory, pipeline_run):
    """A copy of the shared pipeline run with five erasure requests landed and processed."""
    root = tmp_path_factory.mktemp("erasure")
    landing = root / "landing"
    shutil.copytree(pipeline_run.settings.landing_dir, landing)
    settings = settings_for(root, landing, pipeline_run.settings.as_of)
    settings.warehouse_path.parent.mkdir(parents=True)
    shutil.copy(pipeline_run.settings.warehouse_path, settings.warehouse_path)
    people = pick_people(landing / "_truth")
    values = person_values(landing / "_truth", people, SALT)
    keys = user_keys(settings.warehouse_path, values)
    land_requests(landing, people)
    result = materialize_landing_and_erasure(settings)
    return settings, people, values + keys, keys, result


def test_each_identifier_type_erases_the_whole_person_from_every_table(erased_copy):
    settings, people, values, keys, result = erased_copy
    assert result.success
    assert len(keys) == len(IDENTIFIER_TYPES)  # each request resolved to one known person
    assert scan_file(settings.warehouse_path, values).empty
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["nothing_left_for_erased_identifiers"] is True


def test_erasure_log_has_counts_per_table_and_no_identifiers(erased_copy):
    settings, people, values, keys, _ = erased_copy
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        log = conn.execute("select * from privacy.erasure_log order by request_id").df()
        privacy_text = " ".join(
            str(v)
            for table in ("erasure_log", "erasure_runs", "erased_identifiers", "removed_records")
            for row in conn.execute(f"select * from privacy.{table}").fetchall()
            for v in row
        )
    assert log["identifier_type"].tolist() == list(IDENTIFIER_TYPES)
    assert log["person_found"].all()
    for rows_removed in log["rows_removed"]:
        counts = json.loads(rows_removed)
        assert counts["raw.erasure_requests"] == 1
        assert counts["identity.identity_map"] >= 2
        assert counts.get("raw.events", 0) > 0
    assert not [v for v in values if v in privacy_text]


def test_records_landed_later_for_an_erased_identifier_are_suppressed(erased_copy):
    settings, people, values, keys, _ = erased_copy
    anonymous = people.loc[people["identifier_type"] == "anonymous_id", "identifier_value"].iloc[0]
    later = settings.landing_dir / "events" / "2099" / "later.jsonl"
    later.parent.mkdir(parents=True)
    later.write_text(
        json.dumps(
            {
                "messageId": "late-1",
                "type": "page",
                "anonymousId": anonymous,
                "timestamp": "2026-06-30T08:00:00Z",
            }
        )
        + "\n"
        + json.dumps(
            {
                "messageId": "late-2",
                "type": "page",
                "anonymousId": "someone-else-1",
                "timestamp": "2026-06-30T08:00:00Z",
            }
        )
        + "\n"
    )
    result = materialize_landing_and_erasure(settings)
    assert result.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        kept = conn.execute(
            "select message_id from raw.events where source_file like 'events/2099/%'"
        ).fetchall()
        suppressed = conn.execute(
            "select records_removed from privacy.removed_records where reason = 'suppressed'"
            " and source_file = 'events/2099/later.jsonl'"
        ).fetchall()
    assert kept == [("late-2",)]
    assert suppressed == [(1,)]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["landed_records_balance_after_erasure"] is True
    assert scan_file(settings.warehouse_path, values).empty


def staging_layer_after_erasure() -> dg.AssetsDefinition:
    """The lead's dbt staging layer, built with the translator that orders it after erasure."""
    from dagster_dbt import DbtCliResource, dbt_assets

    from orchestration.dbt_assets import DBT_LAYERS, dbt_vars
    from orchestration.project import huaxiang_dbt_project

    @dbt_assets(
        manifest=huaxiang_dbt_project.manifest_path,
        project=huaxiang_dbt_project,
        select=DBT_LAYERS["dbt_staging"],
        name="dbt_staging",
        dagster_dbt_translator=ErasureFirstTranslator(),
    )
    def _layer(context: dg.AssetExecutionContext, dbt: DbtCliResource, huaxiang: HuaxiangResource):
        yield from dbt.cli(["build", "--vars", dbt_vars(huaxiang)], context=context).stream()

    return _layer


def definitions_with_privacy(settings: Settings) -> dg.Definitions:
    """The lead's definitions plus the privacy assets and checks, the staging layer waiting for erasure."""
    from orchestration.definitions import build_definitions

    defs = build_definitions(settings)
    assets = [
        staging_layer_after_erasure()
        if isinstance(a, dg.AssetsDefinition) and a.node_def.name == "dbt_staging"
        else a
        for a in defs.assets
    ]
    return dg.Definitions(
        assets=[*assets, *privacy_assets],
        asset_checks=[*defs.asset_checks, *privacy_checks],
        jobs=[
            dg.define_asset_job("all", selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor)
        ],
        resources=defs.resources,
    )


def step_order(result: dg.ExecuteInProcessResult) -> list[str]:
    return [event.step_key for event in result.all_events if event.event_type_value == "STEP_START"]


@pytest.mark.slow
def test_full_pipeline_erasure_reaches_the_published_file(tmp_path):
    landing = tmp_path / "landing"
    summary = generate(people=200, seed=23, out=landing, progress=False)
    settings = settings_for(tmp_path, landing, date.fromisoformat(summary.as_of.isoformat()))
    apply_settings(settings)
    prepare_dbt_manifest()
    defs = definitions_with_privacy(settings)
    staging = defs.resolve_asset_graph().get(dg.AssetKey(["staging", "stg_segment__events"]))
    assert ERASURE_LOG in staging.parent_keys
    first = defs.resolve_job_def("all").execute_in_process(raise_on_error=False)
    assert first.success
    assert step_order(first).index("privacy__erasure_log") < step_order(first).index("dbt_staging")
    people = pick_people(landing / "_truth")
    values = person_values(landing / "_truth", people, SALT)
    values += user_keys(settings.warehouse_path, values)
    land_requests(landing, people)
    second = defs.resolve_job_def("all").execute_in_process(raise_on_error=False)
    assert second.success
    assert scan_file(settings.warehouse_path, values).empty
    assert scan_file(settings.published_path, values).empty
    checks = {e.check_name: e.passed for e in second.get_asset_check_evaluations()}
    assert checks["no_raw_pii_in_published_tables"] is True
