"""Thin Dagster assets for marketing audiences and campaign evaluation, and the audience CSV export.

Audiences (catalogue/audiences.yml) are evaluated on marts.user_profile into `ml.audience_members` (today's
members, control flag included), `ml.audience_summary` (sizes and consent exclusions per audience) and
`ml.audience_member_history` (every run's membership, so a campaign is judged on the audience as it stood at
its start). Campaigns (catalogue/campaigns/*.yml) are evaluated into `ml.campaign_results`. The dbt models in
models/marts/activation publish them as marts.*.
"""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from ml_assets.audiences import (
    append_membership_history,
    audience_members,
    audience_summary,
    check_tag_references,
    load_audiences,
    match_audiences,
)
from ml_assets.campaigns import evaluate_campaigns, load_campaigns
from orchestration.ml import markdown_table
from orchestration.resources import HuaxiangResource, replace_table, table_exists
from orchestration.settings import REPO_ROOT

USER_PROFILE = dg.AssetKey(["marts", "user_profile"])
TAG_CATALOGUE = dg.AssetKey(["ml", "tag_catalogue"])
ORDERS_AS_OF = dg.AssetKey(["intermediate", "int_orders_as_of"])
EVENTS_AS_OF = dg.AssetKey(["intermediate", "int_events_as_of"])
AUDIENCE_MEMBERS = dg.AssetKey(["ml", "audience_members"])
AUDIENCE_SUMMARY = dg.AssetKey(["ml", "audience_summary"])
AUDIENCE_MEMBER_HISTORY = dg.AssetKey(["ml", "audience_member_history"])
CAMPAIGN_RESULTS = dg.AssetKey(["ml", "campaign_results"])

DEFAULT_EXPORT_DIR = REPO_ROOT / "data" / "exports"


class AudiencesConfig(dg.Config):
    catalogue_path: str = str(REPO_ROOT / "catalogue" / "audiences.yml")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key, deps=[USER_PROFILE, TAG_CATALOGUE], group_name="ml", kinds={"python", "duckdb"})
        for key in (AUDIENCE_MEMBERS, AUDIENCE_SUMMARY, AUDIENCE_MEMBER_HISTORY)
    ]
)
def marketing_audiences(huaxiang: HuaxiangResource, config: AudiencesConfig):
    """Audience members with marketing consent and a stable control group; consent exclusions counted."""
    path = Path(config.catalogue_path)
    audiences = load_audiences(path)
    as_of = huaxiang.as_of_date()
    with huaxiang.connect() as conn:
        known_tags = {row[0] for row in conn.execute("select tag from ml.tag_catalogue").fetchall()}
        check_tag_references(audiences, known_tags, path.name)
        matches = match_audiences(conn, audiences, "marts.user_profile", path.name)
        members = audience_members(matches, audiences)
        summary = audience_summary(audiences, matches, members, as_of)
        previous = (
            conn.execute("select * from ml.audience_member_history").df()
            if table_exists(conn, "ml.audience_member_history")
            else None
        )
        history = append_membership_history(previous, members, as_of)
        replace_table(
            conn, "ml.audience_members", members.assign(as_of_date=as_of).astype({"as_of_date": "object"})
        )
        replace_table(conn, "ml.audience_summary", summary)
        replace_table(conn, "ml.audience_member_history", history)
    yield dg.MaterializeResult(
        asset_key=AUDIENCE_MEMBERS,
        metadata={
            "audiences": len(audiences),
            "rows": len(members),
            "control_rows": int(members["is_control"].sum()),
            "excluded_without_marketing_consent": int(summary["excluded_without_marketing_consent"].sum()),
            "excluded_without_profiling_consent": int(summary["excluded_without_profiling_consent"].sum()),
            "excluded_without_consent_by_audience": dg.MetadataValue.json(
                {
                    row.audience: int(
                        row.excluded_without_marketing_consent + row.excluded_without_profiling_consent
                    )
                    for row in summary.itertuples()
                }
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=AUDIENCE_SUMMARY,
        metadata={
            "summary": markdown_table(
                summary[
                    [
                        "audience",
                        "matched_people",
                        "excluded_without_marketing_consent",
                        "excluded_without_profiling_consent",
                        "treatment_members",
                        "control_members",
                        "control_share",
                        "actual_control_share",
                    ]
                ]
            )
        },
    )
    yield dg.MaterializeResult(
        asset_key=AUDIENCE_MEMBER_HISTORY,
        metadata={"runs_kept": int(pd.Series(history["as_of_date"]).nunique()), "rows": len(history)},
    )


class CampaignsConfig(dg.Config):
    campaigns_dir: str = str(REPO_ROOT / "catalogue" / "campaigns")


PAID_ORDERS_SQL = """
select user_key, ordered_date, paid_amount::double as paid_amount
from intermediate.int_orders_as_of
where is_paid and user_key is not null
"""

GOAL_EVENTS_SQL = """
select user_key, event_name, occurred_date
from intermediate.int_events_as_of
where list_contains($event_names, event_name)
"""


@dg.asset(
    key=CAMPAIGN_RESULTS,
    deps=[AUDIENCE_MEMBER_HISTORY, AUDIENCE_SUMMARY, ORDERS_AS_OF, EVENTS_AS_OF],
    group_name="ml",
    kinds={"python", "duckdb", "scipy"},
)
def campaign_results(huaxiang: HuaxiangResource, config: CampaignsConfig) -> dg.MaterializeResult:
    """Treatment against control for each campaign's window and pre-period: conversion and revenue uplift."""
    as_of = huaxiang.as_of_date()
    with huaxiang.connect() as conn:
        history = conn.execute("select * from ml.audience_member_history").df()
        summary_audiences = {
            row[0] for row in conn.execute("select audience from ml.audience_summary").fetchall()
        }
        campaigns = load_campaigns(Path(config.campaigns_dir), summary_audiences | set(history["audience"]))
        event_names = sorted({c.goal_event for c in campaigns if c.goal_event is not None})
        paid_orders = conn.execute(PAID_ORDERS_SQL).df()
        goal_events = conn.execute(GOAL_EVENTS_SQL, {"event_names": event_names}).df()
        results = evaluate_campaigns(campaigns, history, paid_orders, goal_events, as_of)
        replace_table(conn, "ml.campaign_results", results)
    not_started = [c.name for c in campaigns if c.start_date > as_of]
    return dg.MaterializeResult(
        metadata={
            "campaigns": len(campaigns),
            "not_started": ", ".join(not_started) or "(none)",
            "results": markdown_table(
                results[
                    [
                        "campaign",
                        "period",
                        "treatment_people",
                        "control_people",
                        "treatment_conversion_rate",
                        "control_conversion_rate",
                        "conversion_uplift",
                        "conversion_p_value",
                        "revenue_uplift",
                        "revenue_p_value",
                    ]
                ]
            ),
        }
    )


activation_assets = [marketing_audiences, campaign_results]


class UnknownAudienceError(LookupError):
    """The audience to export is not in marts.audience_summary (not in the catalogue, or not built yet)."""


EXPORT_SQL = """
with treatment as (
    select user_key
    from marts.audience_members
    where audience = $audience and not is_control
),

miniprogram_openids as (
    -- An openid is per WeChat appid; the one seen on mini-program events is the mini-program's.
    select ids.user_key, ids.identifier_value as openid, max(events.occurred_at) as last_seen_at
    from marts.identity_map as ids
    inner join marts.fct_events as events
        on events.wechat_openid = ids.identifier_value and events.channel = 'miniprogram'
    where ids.identifier_type = 'openid' and not ids.is_shared
        and ids.user_key in (select user_key from treatment)
    group by ids.user_key, ids.identifier_value
),

latest_openid as (
    select user_key, openid
    from miniprogram_openids
    qualify row_number() over (partition by user_key order by last_seen_at desc, openid) = 1
),

unionids as (
    select user_key, min(identifier_value) as unionid
    from marts.identity_map
    where identifier_type = 'unionid' and not is_shared
    group by user_key
)

select treatment.user_key, latest_openid.openid, unionids.unionid
from treatment
left join latest_openid on latest_openid.user_key = treatment.user_key
left join unionids on unionids.user_key = treatment.user_key
order by treatment.user_key
"""


def export_frame(conn: duckdb.DuckDBPyConnection, name: str) -> tuple[pd.DataFrame, str]:
    """Treatment members of one audience with their mini-program openid and unionid, and its as-of date."""
    found = conn.execute(
        "select as_of_date from marts.audience_summary where audience = ?", [name]
    ).fetchall()
    if not found:
        known = [
            row[0]
            for row in conn.execute("select audience from marts.audience_summary order by 1").fetchall()
        ]
        raise UnknownAudienceError(
            f"no audience {name!r}; known audiences: {', '.join(known) or '(none built yet)'}"
        )
    return conn.execute(EXPORT_SQL, {"audience": name}).df(), str(found[0][0])


def export_audience(conn: duckdb.DuckDBPyConnection, name: str, out_dir: Path = DEFAULT_EXPORT_DIR) -> Path:
    """Write `<audience>_<as_of>.csv` (UTF-8, header) for upload; the control group is held out."""
    frame, as_of = export_frame(conn, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}_{as_of}.csv"
    frame.to_csv(path, index=False, encoding="utf-8")
    return path
