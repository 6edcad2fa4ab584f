"""A daily incremental run gives exactly what a full refresh gives on the same data, late events included."""

import json
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from orchestration.cli import run_pipeline
from tests.integration.conftest import PipelineRun, settings_for
from tests.integration.test_history import hold_back_after

pytestmark = pytest.mark.integration

# Every table the incremental models feed, directly or through the person-level models built on them.
COMPARED = (
    "staging.stg_segment__events",
    "marts.fct_events",
    "marts.fct_orders",
    "marts.fct_order_items",
    "marts.fct_sessions",
    "marts.dim_users",
    "marts.user_features",
    "intermediate.int_events_as_of",
    "marts.kpi_active_users",
    "marts.kpi_retention",
    "marts.kpi_funnel",
    "ml.user_rfm",
    "ml.user_lifecycle",
)
LATE_DAYS = 30


def anonymous_visitor_and_member(run: PipelineRun) -> tuple[str, str, str]:
    """A device that is a person on its own (no login yet) and some member's user_id with its person."""
    device = run.query(
        """
        with people as (
            select user_key, count(*) as identifiers from identity.identity_map where not is_shared group by 1
        )
        select m.identifier_value
        from identity.identity_map m join people using (user_key)
        where m.identifier_type = 'anonymous_id' and people.identifiers = 1 and not m.is_shared
          and exists (select 1 from marts.fct_events e where e.anonymous_id = m.identifier_value)
        order by 1 limit 1
        """
    )[0][0]
    user_id, user_key = run.query(
        """
        select identifier_value, user_key from identity.identity_map
        where identifier_type = 'user_id' and not is_shared
          and user_key in (select user_key from marts.fct_events)
        order by 1 limit 1
        """
    )[0]
    return device, user_id, user_key


def segment_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def land_late_events(landing: Path, arrival_day: date, device: str, user_id: str) -> Path:
    """A file that arrives today with events from weeks ago: the device logs in as the member (an identify
    call, which makes the device's earlier events that member's) and views a product the day before."""
    late = datetime.combine(arrival_day - timedelta(days=LATE_DAYS), datetime.min.time()) + timedelta(hours=3)
    records = [
        {
            "messageId": "late-view-1",
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": device,
            "properties": {"product_id": "SKU10110"},
            "context": {"channel": "miniprogram"},
            "timestamp": segment_timestamp(late - timedelta(days=1)),
        },
        {
            "messageId": "late-identify-1",
            "type": "identify",
            "userId": user_id,
            "anonymousId": device,
            "traits": {},
            "context": {"channel": "miniprogram"},
            "timestamp": segment_timestamp(late),
        },
    ]
    folder = landing / "events" / f"{arrival_day:%Y}" / f"{arrival_day:%m}" / f"{arrival_day:%d}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "late_arrivals.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def differing_rows(left: Path, right: Path, table: str) -> tuple[int, int, int, int]:
    """(rows left, rows right, rows only left, rows only right), comparing whole rows as multisets.

    Floating-point columns are compared to 9 decimal places: an incremental table holds its rows in another
    order than a rebuilt one, and a sum of doubles depends on the order of its terms in the last bits.
    """
    schema, name = table.split(".")
    with duckdb.connect() as conn:
        conn.execute(f"attach '{left}' as l (read_only)")
        conn.execute(f"attach '{right}' as r (read_only)")
        columns = conn.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_catalog = 'l' and table_schema = ? and table_name = ? order by ordinal_position",
            [schema, name],
        ).fetchall()
        select = ", ".join(
            f'round("{column}", 9)' if data_type in ("DOUBLE", "FLOAT") else f'"{column}"'
            for column, data_type in columns
        )
        return conn.execute(
            f"""
            select (select count(*) from l.{table}), (select count(*) from r.{table}),
                   (select count(*) from (select {select} from l.{table} except all select {select} from r.{table})),
                   (select count(*) from (select {select} from r.{table} except all select {select} from l.{table}))
            """
        ).fetchall()[0]


def compiled_fct_events_sql(run_id: str) -> str:
    """The SQL dbt ran for fct_events in the given Dagster run (dagster-dbt keeps a target folder per step)."""
    from orchestration.project import huaxiang_dbt_project

    [folder] = huaxiang_dbt_project.project_dir.joinpath("target").glob(f"dbt_marts-{run_id[:7]}-*")
    return (folder / "run" / "huaxiang" / "models" / "marts" / "core" / "fct_events.sql").read_text()


def test_incremental_run_equals_full_refresh_with_late_events_and_a_merge(tmp_path, generated):
    landing, held = tmp_path / "landing", tmp_path / "held"
    shutil.copytree(generated, landing)
    summary = json.loads((landing / "_truth" / "summary.json").read_text())
    today = date.fromisoformat(summary["as_of"])
    hold_back_after(landing, today - timedelta(days=3), held)

    incremental = PipelineRun(settings_for(tmp_path / "a", landing, today - timedelta(days=3)), held, summary, False)
    assert run_pipeline(incremental.settings).success
    device, user_id, member_key = anonymous_visitor_and_member(incremental)
    device_events = incremental.query("select count(*) from marts.fct_events where anonymous_id = ?", [device])[0][0]

    shutil.copytree(held, landing, dirs_exist_ok=True)
    land_late_events(landing, today, device, user_id)
    incremental.settings = settings_for(tmp_path / "a", landing, today)
    result = run_pipeline(incremental.settings)
    assert result.success
    assert "delete from" in compiled_fct_events_sql(result.run_id).lower()  # the incremental path ran

    # The late events are in, dated weeks back, and every event of the device moved to the member.
    late = incremental.query(
        "select event_id, user_key, occurred_date from marts.fct_events where event_id like 'late-%' order by 1"
    )
    assert [(event_id, key) for event_id, key, _ in late] == [
        ("late-identify-1", member_key),
        ("late-view-1", member_key),
    ]
    assert late[1][2] == today - timedelta(days=LATE_DAYS + 1)
    assert incremental.query(
        "select count(*), count(*) filter (where user_key = ?) from marts.fct_events where anonymous_id = ?",
        [member_key, device],
    )[0] == (device_events + 2, device_events + 2)

    full = tmp_path / "b" / "warehouse" / "huaxiang.duckdb"
    full.parent.mkdir(parents=True)
    shutil.copy(incremental.settings.warehouse_path, full)
    refreshed = run_pipeline(settings_for(tmp_path / "b", landing, today), full_refresh=True)
    assert refreshed.success
    assert "delete from" not in compiled_fct_events_sql(refreshed.run_id).lower()

    differences = {
        table: counts
        for table in COMPARED
        if (counts := differing_rows(incremental.settings.warehouse_path, full, table))[2:] != (0, 0)
    }
    assert differences == {}, "(rows incremental, rows full, only incremental, only full) per table"
