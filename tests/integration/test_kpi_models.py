"""KPI marts rebuilt by dbt on a pipeline-built warehouse: unit tests pass, the numbers hang together."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
KPI_FOLDER = DBT_PROJECT / "models" / "marts" / "kpi"
KPI_MODELS = sorted(path.stem for path in KPI_FOLDER.glob("kpi_*.sql"))
UPSTREAM = (
    "intermediate.int_events_as_of",
    "intermediate.int_orders_as_of",
    "marts.dim_users",
    "identity.identity_map",
)


@dataclass
class KpiBuild:
    returncode: int
    output: str
    results: list[dict]
    warehouse: Path
    as_of: str
    timezone: str

    def frame(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return conn.execute(sql).df()


def unit_test_names() -> set[str]:
    """The unit tests declared in the KPI folder, so the check below keeps up when more are added."""
    names = set()
    for path in KPI_FOLDER.glob("*.yml"):
        names |= {test["name"] for test in yaml.safe_load(path.read_text()).get("unit_tests", [])}
    return names


def relation_exists(warehouse: Path, table: str) -> bool:
    """The KPI models read these; without them dbt would fail for a reason that is not theirs."""
    schema, name = table.split(".")
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        query = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
        return conn.execute(query, [schema, name]).fetchone()[0] == 1


@pytest.fixture(scope="module")
def kpi_build(pipeline_run, tmp_path_factory) -> KpiBuild:
    root = tmp_path_factory.mktemp("kpi")
    warehouse = root / "warehouse.duckdb"
    shutil.copyfile(pipeline_run.settings.warehouse_path, warehouse)
    # Only the KPI inputs are needed: a failure in a layer after them must not hide these tests.
    missing = [table for table in UPSTREAM if not relation_exists(warehouse, table)]
    assert not missing, f"the pipeline run did not build {missing}"
    as_of = pipeline_run.settings.as_of.isoformat()
    timezone = pipeline_run.settings.timezone
    command = [
        str(Path(sys.executable).with_name("dbt")),
        "build",
        "--select", "path:models/marts/kpi",
        "--vars", json.dumps({"as_of": as_of, "timezone": timezone}),
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(root / "target"),
        "--log-path", str(root / "logs"),
    ]  # fmt: skip
    env = {**os.environ, "HUAXIANG_WAREHOUSE": str(warehouse), "HUAXIANG_TIMEZONE": timezone}
    env.pop("HUAXIANG_ENGINE", None)
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    run_results = root / "target" / "run_results.json"
    results = json.loads(run_results.read_text())["results"] if run_results.exists() else []
    output = completed.stdout + completed.stderr
    return KpiBuild(completed.returncode, output, results, warehouse, as_of, timezone)


def test_build_succeeds_with_every_model_data_test_and_unit_test(kpi_build):
    assert kpi_build.returncode == 0, kpi_build.output[-3000:]
    by_kind: dict[str, dict[str, str]] = {}
    for result in kpi_build.results:
        kind, name = result["unique_id"].split(".")[0], result["unique_id"].split(".")[-1]
        by_kind.setdefault(kind, {})[name] = result["status"]
    assert by_kind["model"] == dict.fromkeys(KPI_MODELS, "success")
    assert by_kind["unit_test"] == dict.fromkeys(unit_test_names(), "pass")
    assert len(by_kind["unit_test"]) >= 8
    assert by_kind["test"] and set(by_kind["test"].values()) == {"pass"}


def test_retention_starts_at_one_and_never_exceeds_the_cohort(kpi_build):
    retention = kpi_build.frame("select * from marts.kpi_retention")
    assert set(retention["grain"]) == {"week", "month"}
    first = retention[retention["period"] == 0]
    assert (first["retention_rate"] == 1.0).all()
    assert (first["retained_users"] == first["cohort_size"]).all()
    assert (retention["retained_users"] <= retention["cohort_size"]).all()
    rates = retention["retained_users"] / retention["cohort_size"]
    assert (retention["retention_rate"] - rates).abs().max() < 1e-12
    weeks = pd.to_datetime(retention.loc[retention["grain"] == "week", "cohort"])
    assert (weeks.dt.weekday == 0).all()
    months = pd.to_datetime(retention.loc[retention["grain"] == "month", "cohort"])
    assert (months.dt.day == 1).all()
    assert (pd.to_datetime(retention["period_start"]) <= pd.Timestamp(kpi_build.as_of)).all()


def test_every_active_person_is_in_exactly_one_cohort_per_grain(kpi_build):
    active_people = kpi_build.frame(
        "select count(*) as people from ("
        " select user_key from intermediate.int_events_as_of"
        " union select user_key from intermediate.int_orders_as_of where is_paid and user_key is not null)"
    )["people"][0]
    sizes = kpi_build.frame(
        "select grain, sum(cohort_size) as people from marts.kpi_retention where period = 0 group by grain"
    )
    assert active_people > 0
    by_grain = dict(zip(sizes["grain"], sizes["people"], strict=True))
    assert by_grain == {"week": active_people, "month": active_people}


def test_funnel_users_never_increase_from_step_to_step(kpi_build):
    funnel = kpi_build.frame("select * from marts.kpi_funnel order by channel, step_number")
    assert "all" in set(funnel["channel"])
    for channel, steps in funnel.groupby("channel"):
        assert list(steps["step_number"]) == [1, 2, 3, 4], channel
        assert steps["users"].is_monotonic_decreasing, channel
        assert steps["users"].iloc[0] > 0, channel
    assert funnel["conversion_from_first"].between(0, 1).all()
    assert funnel["conversion_from_previous"].dropna().between(0, 1).all()


def test_active_users_match_a_direct_count_and_stickiness_is_a_share(kpi_build):
    active = kpi_build.frame("select * from marts.kpi_active_users order by activity_date")
    assert str(active["activity_date"].iloc[-1])[:10] == kpi_build.as_of
    assert active["stickiness"].dropna().between(0, 1).all()
    assert ((active["dau"] <= active["wau"]) & (active["wau"] <= active["mau"])).all()
    daily = kpi_build.frame(
        "select activity_date, count(distinct user_key) as people from ("
        " select user_key, occurred_date as activity_date from intermediate.int_events_as_of"
        " union all select user_key, ordered_date from intermediate.int_orders_as_of"
        " where is_paid and user_key is not null) group by activity_date"
    )
    expected = dict(zip(daily["activity_date"].astype(str), daily["people"], strict=True))
    observed = dict(zip(active["activity_date"].astype(str), active["dau"], strict=True))
    assert {day: count for day, count in observed.items() if count} == expected


def test_new_users_add_up_to_the_people_first_seen_by_the_as_of_day(kpi_build):
    people = kpi_build.frame("select first_seen_at from marts.dim_users")
    local_days = (
        pd.to_datetime(people["first_seen_at"])
        .dt.tz_localize("UTC")
        .dt.tz_convert(kpi_build.timezone)
        .dt.date
    )
    first_seen_by_as_of = int((local_days <= pd.Timestamp(kpi_build.as_of).date()).sum())
    new_users = kpi_build.frame("select sum(new_users) as people from marts.kpi_new_users")["people"][0]
    assert first_seen_by_as_of > 0
    assert new_users == first_seen_by_as_of


def test_heatmap_weekdays_agree_with_the_calendar(kpi_build):
    heatmap = kpi_build.frame("select * from marts.kpi_activity_heatmap")
    assert len(heatmap) == 7 * 24
    events = kpi_build.frame("select occurred_date from intermediate.int_events_as_of")
    per_weekday = pd.to_datetime(events["occurred_date"]).dt.weekday.value_counts().to_dict()
    observed = heatmap.groupby("weekday")["events"].sum().to_dict()
    assert {day: count for day, count in observed.items() if count} == per_weekday


def test_geo_adds_up_to_all_people_and_all_paid_revenue(kpi_build):
    geo = kpi_build.frame("select * from marts.kpi_geo")
    totals = kpi_build.frame(
        "select sum(paid_amount) as revenue, count(*) as orders"
        " from intermediate.int_orders_as_of where is_paid"
    )
    people = kpi_build.frame("select sum(new_users) as people from marts.kpi_new_users")["people"][0]
    assert geo["users"].sum() == people
    assert geo["paid_orders"].sum() == totals["orders"][0]
    assert float(geo["paid_revenue"].sum()) == pytest.approx(float(totals["revenue"][0]), abs=0.005)
    assert (geo["buyers"] <= geo["paid_orders"]).all()


def test_share_k_factor_is_visitors_brought_per_sharer(kpi_build):
    shares = kpi_build.frame("select * from marts.kpi_share_acquisition")
    assert len(shares) > 0
    assert (shares["buyers_brought"] <= shares["visitors_brought"]).all()
    assert shares["k_factor"].nunique() == 1
    assert shares["k_factor"].iloc[0] == pytest.approx(shares["visitors_brought"].sum() / len(shares))
