"""The whole graph on generated data, scored against the truth the generator planted."""

import shutil

import pytest

from orchestration.cli import run_pipeline
from orchestration.pii import hash_phone
from tests.integration.conftest import SALT, settings_for

pytestmark = pytest.mark.integration

MARTS = (
    "fct_events",
    "fct_orders",
    "fct_order_items",
    "fct_sessions",
    "dim_products",
    "dim_users",
    "identity_map",
)


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
    planted = {
        (r.source_file, int(r.line_number)) for r in pipeline_run.truth("bad_records.csv").itertuples()
    }
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
    truth.loc[is_phone, "identifier_value"] = [
        hash_phone(v, SALT) for v in truth.loc[is_phone, "identifier_value"]
    ]
    predicted = pipeline_run.frame(
        "select identifier_type, identifier_value, user_key from marts.identity_map where not is_shared"
    ).merge(truth[["identifier_type", "identifier_value"]])
    precision, recall = pairwise_precision_recall(predicted, truth)
    assert precision >= 0.99 and recall >= 0.99, (precision, recall)


def test_planted_shared_identifiers_are_kept_apart(pipeline_run):
    planted = pipeline_run.truth("shared_identifiers.csv")
    shared = {
        (t, v)
        for t, v in pipeline_run.query(
            "select identifier_type, identifier_value from marts.identity_map where is_shared"
        )
    }
    for row in planted.itertuples():
        value = (
            hash_phone(row.identifier_value, SALT) if row.identifier_type == "phone" else row.identifier_value
        )
        assert (row.identifier_type, value) in shared


def test_no_raw_phone_number_reaches_the_published_copy(pipeline_run):
    import duckdb

    phones = set(pipeline_run.truth("identifiers.csv").query("identifier_type == 'phone'").identifier_value)
    with duckdb.connect(str(pipeline_run.settings.published_path), read_only=True) as conn:
        for schema, table in conn.execute(
            "select table_schema, table_name from information_schema.tables"
        ).fetchall():
            text = " ".join(
                str(v) for row in conn.execute(f'select * from "{schema}"."{table}"').fetchall() for v in row
            )
            assert not any(p in text for p in list(phones)[:200]), f"{schema}.{table}"


def mart_checksums(run) -> dict[str, tuple]:
    return {
        name: run.query(f"select count(*), sum(hash(t)) from (select * from marts.{name}) t")[0]
        for name in MARTS
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
    loaded = run.query("select records_loaded from raw.landed_files where relative_path = ?", [relative])[0][
        0
    ]
    assert loaded == planted["lines"] - planted["bad"] - planted["duplicates"]
    assert run.query("select count(*) from raw.events")[0][0] == raw_before + loaded


def independent_paid_orders(landing, bad: set, as_of):
    """Paid orders as of the as-of day, read straight from the landed CSVs with pandas (not the pipeline)."""
    import pandas as pd

    frames = []
    for number, path in enumerate(sorted((landing / "orders").glob("*.csv"))):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        frame["line"] = range(2, len(frame) + 2)
        frame["file"] = number
        relative = path.relative_to(landing).as_posix()
        frames.append(frame[[(relative, line) not in bad for line in frame["line"]]])
    orders = pd.concat(frames, ignore_index=True)
    orders["ordered_day"] = pd.to_datetime(orders["ordered_at"]).dt.date
    orders["updated"] = pd.to_datetime(orders["updated_at"])
    orders = orders[(orders["ordered_day"] <= as_of) & (orders["updated"].dt.date <= as_of)]
    latest = orders.sort_values(["updated", "file", "line"]).groupby("order_id").tail(1)
    return latest[latest["status"] == "paid"]


def test_rfm_equals_an_independent_computation_on_generated_data(pipeline_run):
    from datetime import date

    import pandas as pd

    as_of = date.fromisoformat(pipeline_run.summary["as_of"])
    bad = {(r.source_file, int(r.line_number)) for r in pipeline_run.truth("bad_records.csv").itertuples()}
    paid = independent_paid_orders(pipeline_run.settings.landing_dir, bad, as_of)
    keys = pipeline_run.frame(
        "select identifier_type, identifier_value, user_key from marts.identity_map where not is_shared"
    )
    by_user = keys[keys.identifier_type == "user_id"].set_index("identifier_value")["user_key"]
    by_phone = keys[keys.identifier_type == "phone"].set_index("identifier_value")["user_key"]
    paid = paid.assign(
        user_key=paid["user_id"]
        .map(by_user)
        .fillna(paid["phone"].map(lambda p: hash_phone(p, SALT) if p else None).map(by_phone))
    ).dropna(subset=["user_key"])
    paid["cents"] = (paid["paid_amount"].astype(float) * 100).round().astype(int)
    expected = paid.groupby("user_key").agg(
        frequency=("order_id", "size"), cents=("cents", "sum"), last_day=("ordered_day", "max")
    )
    expected["recency_days"] = [(as_of - d).days for d in expected["last_day"]]
    got = pipeline_run.frame(
        "select user_key, frequency, cast(round(monetary * 100) as bigint) as cents, recency_days"
        " from marts.user_profile where has_profiling_consent and frequency > 0"
    ).set_index("user_key")
    consenting = set(got.index) | set(
        pipeline_run.frame(
            "select user_key from marts.user_profile where has_profiling_consent and frequency = 0"
        )["user_key"]
    )
    expected = expected[expected.index.isin(consenting)]
    assert len(got) == len(expected) > 100
    joined = expected.join(got, rsuffix="_got", how="outer")
    for column in ("frequency", "cents", "recency_days"):
        assert (joined[column] == joined[f"{column}_got"]).all(), column
    assert pd.api.types.is_integer_dtype(joined["frequency"])


def test_planted_lifecycle_stages_are_recovered(pipeline_run):
    truth = pipeline_run.truth("persons.csv")
    truth = truth[(truth.is_clear_cut == "true") & (truth.crm_user_id != "")]
    got = pipeline_run.frame(
        "select i.identifier_value as crm_user_id, p.lifecycle_stage from marts.user_profile p"
        " join marts.identity_map i on i.user_key = p.user_key and i.identifier_type = 'user_id'"
        " where p.has_profiling_consent"
    )
    joined = truth.merge(got, on="crm_user_id", suffixes=("_planted", "_found"))
    assert len(joined) > 200
    accuracy = (joined.lifecycle_stage_planted == joined.lifecycle_stage_found).mean()
    assert accuracy >= 0.95, accuracy
