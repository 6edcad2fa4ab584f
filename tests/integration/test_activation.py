"""Audiences, campaigns and the export on a copy of the pipeline-built warehouse."""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ml_assets.audiences import compile_rule, load_audiences
from orchestration.activation import activation_assets, export_audience
from orchestration.generator import MP_APPID
from orchestration.resources import HuaxiangResource
from orchestration.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

DBT_PROJECT = REPO_ROOT / "dbt_project"
AUDIENCES = load_audiences(REPO_ROOT / "catalogue" / "audiences.yml")
ML_KEYS = {
    ("ml", name)
    for name in ("audience_members", "audience_summary", "audience_member_history", "campaign_results")
}


@dataclass
class ActivationRun:
    settings: Settings
    first: dg.ExecuteInProcessResult
    members_after_first: pd.DataFrame
    second: dg.ExecuteInProcessResult
    dbt_returncode: int
    dbt_output: str
    export_dir: Path

    def frame(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as conn:
            return conn.execute(sql).df()


def build_activation_models(settings: Settings, target_dir: Path) -> subprocess.CompletedProcess:
    """The new dbt layer (models/marts/activation), run on the copy with its own target folder."""
    command = [
        str(Path(sys.executable).with_name("dbt")),
        "build",
        "--select", "path:models/marts/activation",
        "--vars", json.dumps({"as_of": settings.as_of.isoformat(), "timezone": settings.timezone}),
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(target_dir / "target"),
        "--log-path", str(target_dir / "logs"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "HUAXIANG_WAREHOUSE": str(settings.warehouse_path),
        "HUAXIANG_TIMEZONE": settings.timezone,
    }
    env.pop("HUAXIANG_ENGINE", None)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def activation_run(pipeline_run, tmp_path_factory) -> ActivationRun:
    """The activation assets twice (to see assignment is stable), then the dbt layer, on a private copy."""
    root = tmp_path_factory.mktemp("activation")
    settings = pipeline_run.private_copy(root)
    resources = {"huaxiang": HuaxiangResource.from_settings(settings)}
    first = dg.materialize(activation_assets, resources=resources)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        members_after_first = conn.execute(
            "select * from ml.audience_members order by audience, user_key"
        ).df()
    second = dg.materialize(activation_assets, resources=resources)
    built = build_activation_models(settings, root)
    return ActivationRun(
        settings,
        first,
        members_after_first,
        second,
        built.returncode,
        built.stdout + built.stderr,
        root / "exports",
    )


def marketing_consent(run: ActivationRun) -> pd.DataFrame:
    """Each person's marketing consent from the raw rows by the contract's rule (no row: not granted)."""
    raw = run.frame(
        "select user_id, granted, recorded_at, file_seq, line_number from raw.consents"
        " where purpose = 'marketing'"
    )
    local_day = raw["recorded_at"].dt.tz_localize("UTC").dt.tz_convert(run.settings.timezone).dt.date
    raw = raw[local_day <= run.settings.as_of]
    latest = raw.sort_values(["recorded_at", "file_seq", "line_number"]).groupby("user_id").tail(1)
    granted_ids = set(latest.loc[latest["granted"].astype(bool), "user_id"])
    keys = run.frame(
        "select identifier_value as user_id, user_key from identity.identity_map"
        " where identifier_type = 'user_id' and not is_shared"
    )
    granted = set(keys.loc[keys["user_id"].isin(granted_ids), "user_key"])
    people = run.frame("select user_key from marts.user_profile")
    return people.assign(granted=people["user_key"].isin(granted))


def test_every_asset_materializes_and_the_dbt_layer_builds(activation_run):
    assert activation_run.first.success and activation_run.second.success
    materialized = {
        tuple(e.materialization.asset_key.path)
        for e in activation_run.first.get_asset_materialization_events()
    }
    assert materialized == ML_KEYS
    assert activation_run.dbt_returncode == 0, activation_run.dbt_output[-3000:]
    published = activation_run.frame("select audience, user_key, is_control from marts.audience_members")
    assert len(published) == len(activation_run.members_after_first) > 0


def test_only_people_with_marketing_consent_are_members_and_the_rest_are_counted(activation_run):
    consent = marketing_consent(activation_run)
    assert (~consent["granted"]).sum() > 0, (
        "the generated data should include people without marketing consent"
    )
    granted = set(consent.loc[consent["granted"], "user_key"])
    members = activation_run.members_after_first
    assert set(members["user_key"]) <= granted
    summary = activation_run.frame("select * from marts.audience_summary").set_index("audience")
    assert list(summary.index) == [a.name for a in AUDIENCES]
    for audience in AUDIENCES:
        selected = set(
            activation_run.frame(
                f"select user_key from marts.user_profile where {compile_rule(audience.rule)}"
            )["user_key"]
        )
        assert summary.loc[audience.name, "matched_people"] == len(selected)
        assert summary.loc[audience.name, "excluded_without_marketing_consent"] == len(selected - granted)
        in_audience = set(members.loc[members["audience"] == audience.name, "user_key"])
        assert in_audience <= selected & granted
        assert summary.loc[audience.name, "members"] == len(in_audience)
    metadata = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in activation_run.first.get_asset_materialization_events()
    }["ml/audience_members"]
    assert (
        metadata["excluded_without_marketing_consent"].value
        == summary["excluded_without_marketing_consent"].sum()
    )
    assert metadata["excluded_without_consent_by_audience"].value == {
        name: row.excluded_without_marketing_consent + row.excluded_without_profiling_consent
        for name, row in summary.iterrows()
    }


def test_control_flags_follow_the_hash_and_the_share_is_near_ten_percent(activation_run):
    members = activation_run.members_after_first
    shares = {a.name: a.control_share for a in AUDIENCES}

    def draw(row) -> float:
        return int(hashlib.sha256(f"{row.audience}:{row.user_key}".encode()).hexdigest()[:16], 16) / 2**64

    expected = [draw(row) < shares[row.audience] for row in members.itertuples()]
    assert members["is_control"].tolist() == expected
    # About 100 members on the small test warehouse: 10% +- 3 binomial standard deviations.
    share, people = members["is_control"].mean(), len(members)
    assert abs(share - 0.1) <= 3 * (0.1 * 0.9 / people) ** 0.5, (share, people)


def test_a_second_run_keeps_membership_and_replaces_the_same_days_snapshot(activation_run):
    after = activation_run.frame("select * from ml.audience_members order by audience, user_key")
    pd.testing.assert_frame_equal(after, activation_run.members_after_first)
    history = activation_run.frame(
        "select as_of_date, count(*) as rows from ml.audience_member_history group by 1"
    )
    assert history["rows"].tolist() == [len(after)]
    assert pd.Timestamp(history["as_of_date"].iloc[0]).date() == activation_run.settings.as_of


def test_shipped_campaigns_compare_the_audience_snapshot_groups(activation_run):
    results = activation_run.frame("select * from marts.campaign_results order by campaign, period")
    members = activation_run.members_after_first
    assert set(results["campaign"]) == {"winback_coupon_2026_06", "second_purchase_coupon_use_2026_06"}
    assert set(results["period"]) == {"pre_period", "campaign"}
    for row in results.itertuples():
        group = members[members["audience"] == row.audience]
        assert row.treatment_people == (~group["is_control"]).sum()
        assert row.control_people == group["is_control"].sum()
        assert 0 <= row.treatment_converters <= row.treatment_people
        if row.treatment_people and row.control_people:
            rates = (
                row.treatment_converters / row.treatment_people - row.control_converters / row.control_people
            )
            assert row.conversion_uplift == pytest.approx(rates)
            assert row.conversion_uplift_ci_low <= row.conversion_uplift <= row.conversion_uplift_ci_high
            assert 0 <= row.conversion_p_value <= 1


def test_the_export_holds_treatment_members_with_mini_program_openids(activation_run):
    with duckdb.connect(str(activation_run.settings.warehouse_path), read_only=True) as conn:
        path = export_audience(conn, "high_value_perks", activation_run.export_dir)
    assert path.name == f"high_value_perks_{activation_run.settings.as_of.isoformat()}.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == "user_key,openid,unionid"
    exported = pd.read_csv(path, dtype=str, keep_default_na=False)
    group = activation_run.members_after_first.query("audience == 'high_value_perks'")
    assert sorted(exported["user_key"]) == sorted(group.loc[~group["is_control"], "user_key"])
    miniprogram_openids = set(
        activation_run.frame(
            "select distinct wechat_openid from staging.stg_segment__events"
            f" where wechat_appid = '{MP_APPID}'"
        )["wechat_openid"]
    )
    known = exported.loc[exported["openid"] != "", "openid"]
    assert len(known) > 0 and set(known) <= miniprogram_openids
