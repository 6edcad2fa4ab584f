"""The whole graph on generated data, scored against the truth the generator planted."""

import shutil

import pytest

from orchestration.cli import run_pipeline
from orchestration.pii import hash_phone
from tests.integration.conftest import SALT, settings_for

pytestmark = pytest.mark.integration

MARTS = ("fct_events", "fct_orders", "fct_order_items", "fct_sessions", "dim_products", "dim_users", "identity_map")


def test_the_run_succeeds_and_publishes(pipeline_run):
    assert pipeline_run.success
    assert pipeline_run.settings.published_path.exists()


def test_every_landed_record_is_accounted_for_per_file(pipeline_run):
    files = pipeline_run.summary["files"]
    manifest = {
        row[0]: row[1:]
        for row in pipeline_run.query(
            "select relative_path, records_read, records_loaded, records_quarantined, records_duplicate"
            " from raw.landed_files"
        )
    }
    assert set(manifest) == set(files)
    for path, planted in files.items():
        read, loaded, quarantined, duplicates = manifest[path]
        assert read == planted["lines"], path
        assert quarantined == planted["bad"], path
        assert duplicates == planted["duplicates"], path
        assert read == loaded + quarantined + duplicates, path


def test_every_planted_bad_record_is_in_quarantine_with_a_reason(pipeline_run):
    planted = {(r.source_file, int(r.line_number)) for r in pipeline_run.truth("bad_records.csv").itertuples()}
    quarantined = {
        (f, line): reason
        for f, line, reason in pipeline_run.query(
            "select source_file, line_number, reason from quarantine.rejected_records"
        )
    }
    assert planted == set(quarantined)
    assert all(reason and len(reason) > 10 for reason in quarantined.values())


def test_one_event_row_per_unique_message_id(pipeline_run):
    assert pipeline_run.query("select count(*), count(distinct event_id) from marts.fct_events")[0] == (
        pipeline_run.summary["unique_events"],
        pipeline_run.summary["unique_events"],
    )


def test_orders_carry_their_latest_status(pipeline_run):
    truth = pipeline_run.truth("orders.csv")
    got = dict(pipeline_run.query("select order_id, status from marts.fct_orders"))
    expected = dict(zip(truth.order_id, truth.latest_status, strict=True))
    assert got == expected


def test_identity_groups_identifiers_into_people(pipeline_run):
    """Scored on the identifiers the data can link (`linkable`): the rest are unknowable by design."""
    from ml_assets.identity import pairwise_precision_recall

    truth = pipeline_run.truth("identifiers.csv")
    truth = truth[truth.linkable == "true"].drop(columns="linkable")
    is_phone = truth.identifier_type == "phone"
    truth.loc[is_phone, "identifier_value"] = [hash_phone(v, SALT) for v in truth.loc[is_phone, "identifier_value"]]
    predicted = pipeline_run.frame(
        "select identifier_type, identifier_value, user_key from marts.identity_map where not is_shared"
    ).merge(truth[["identifier_type", "identifier_value"]])
    precision, recall = pairwise_precision_recall(predicted, truth)
    assert precision >= 0.99 and recall >= 0.99, (precision, recall)


def test_planted_shared_identifiers_are_kept_apart(pipeline_run):
    planted = pipeline_run.truth("shared_identifiers.csv")
    shared = {
        (t, v) for t, v in pipeline_run.query("select identifier_type, identifier_value from marts.identity_map where is_shared")
    }
    for row in planted.itertuples():
        value = hash_phone(row.identifier_value, SALT) if row.identifier_type == "phone" else row.identifier_value
        assert (row.identifier_type, value) in shared


def test_no_raw_phone_number_reaches_the_published_copy(pipeline_run):
    import duckdb

    phones = set(pipeline_run.truth("identifiers.csv").query("identifier_type == 'phone'").identifier_value)
    with duckdb.connect(str(pipeline_run.settings.published_path), read_only=True) as conn:
        for schema, table in conn.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall():
            text = " ".join(str(v) for row in conn.execute(f'select * from "{schema}"."{table}"').fetchall() for v in row)
            assert not any(p in text for p in list(phones)[:200]), f"{schema}.{table}"


def mart_checksums(run) -> dict[str, tuple]:
    return {
        name: run.query(f"select count(*), sum(hash(t)) from (select * from marts.{name}) t")[0] for name in MARTS
    }


def test_rerun_adds_nothing_and_a_new_file_adds_exactly_its_records(tmp_path, generated):
    landing = tmp_path / "landing"
    shutil.copytree(generated, landing)
    held_back = sorted((landing / "events").rglob("*.jsonl"))[-1]
    held_back_copy = tmp_path / "held_back.jsonl"
    shutil.move(held_back, held_back_copy)
    import json
    from datetime import date

    from tests.integration.conftest import PipelineRun

    summary = json.loads((landing / "_truth" / "summary.json").read_text())
    settings = settings_for(tmp_path, landing, date.fromisoformat(summary["as_of"]))
    run = PipelineRun(settings, landing / "_truth", summary, run_pipeline(settings).success)
    assert run.success
    before = mart_checksums(run)
    raw_before = run.query("select count(*) from raw.events")[0][0]

    assert run_pipeline(settings).success
    assert mart_checksums(run) == before
    assert run.query("select count(*) from raw.events")[0][0] == raw_before

    shutil.move(held_back_copy, held_back)
    assert run_pipeline(settings).success
    relative = held_back.relative_to(landing).as_posix()
    planted = summary["files"][relative]
    loaded = run.query("select records_loaded from raw.landed_files where relative_path = ?", [relative])[0][0]
    assert loaded == planted["lines"] - planted["bad"] - planted["duplicates"]
    assert run.query("select count(*) from raw.events")[0][0] == raw_before + loaded
