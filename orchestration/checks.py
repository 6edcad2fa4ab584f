"""Asset checks: the GX suites of each layer, and the cross-table relations GX cannot express."""

import dagster as dg

from expectations import gx_asset_check, landing, marts, ml, staging
from orchestration.resources import HuaxiangResource, table_exists
from orchestration.settings import Settings

# (suite, asset key, table, blocking). Suites guarding what BI reads are blocking.
GX_SUITES = [
    (landing.raw_events, ["raw", "events"], "raw.events", False),
    (landing.raw_orders, ["raw", "orders"], "raw.orders", False),
    (landing.raw_order_items, ["raw", "order_items"], "raw.order_items", False),
    (staging.stg_segment__events, ["staging", "stg_segment__events"], "staging.stg_segment__events", False),
    (staging.stg_crm__users, ["staging", "stg_crm__users"], "staging.stg_crm__users", False),
    (staging.stg_crm__orders, ["staging", "stg_crm__orders"], "staging.stg_crm__orders", False),
    (ml.user_lifecycle, ["ml", "user_lifecycle"], "ml.user_lifecycle", False),
    (ml.user_rfm, ["ml", "user_rfm"], "ml.user_rfm", False),
    (ml.user_clv, ["ml", "user_clv"], "ml.user_clv", False),
    (ml.user_clusters, ["ml", "user_clusters"], "ml.user_clusters", False),
    (marts.fct_events, ["marts", "fct_events"], "marts.fct_events", True),
    (marts.fct_orders, ["marts", "fct_orders"], "marts.fct_orders", True),
    (marts.dim_users, ["marts", "dim_users"], "marts.dim_users", True),
    (marts.identity_map, ["marts", "identity_map"], "marts.identity_map", True),
    (marts.user_profile, ["marts", "user_profile"], "marts.user_profile", True),
]


def gx_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    return [
        gx_asset_check(suite, dg.AssetKey(key), table, blocking, lambda: settings.warehouse_path)
        for suite, key, table, blocking in GX_SUITES
    ]


@dg.asset_check(asset=dg.AssetKey(["marts", "user_profile"]), blocking=True)
def no_person_lost_between_dim_users_and_user_profile(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    """Everyone first seen by the as-of date is in the profile, consenting to profiling or not."""
    with huaxiang.connect(read_only=True) as conn:
        missing = conn.execute(
            """
            select count(*) from marts.dim_users d
            where cast(timezone(?, d.first_seen_at at time zone 'UTC') as date) <= ?
              and not exists (select 1 from marts.user_profile p where p.user_key = d.user_key)
            """,
            [huaxiang.timezone, huaxiang.as_of_date()],
        ).fetchall()[0][0]
    return dg.AssetCheckResult(passed=missing == 0, metadata={"people_missing_from_profile": missing})


@dg.asset_check(asset=dg.AssetKey(["marts", "user_profile"]), blocking=True)
def rfm_segments_cover_every_buyer(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    """The RFM segment sizes add up to the number of (consenting) buyers, each with exactly one segment."""
    with huaxiang.connect(read_only=True) as conn:
        buyers, segmented = conn.execute(
            """
            select count(*) filter (where frequency > 0),
                   count(*) filter (where frequency > 0 and rfm_segment is not null and rfm_segment <> 'Non-buyer')
            from marts.user_profile where has_profiling_consent
            """
        ).fetchall()[0]
    return dg.AssetCheckResult(passed=buyers == segmented, metadata={"buyers": buyers, "segmented": segmented})


class DriftConfig(dg.Config):
    max_share_change: float = 0.10


@dg.asset_check(asset=dg.AssetKey(["ml", "user_lifecycle_history"]), blocking=False)
def lifecycle_shares_stable(huaxiang: HuaxiangResource, config: DriftConfig) -> dg.AssetCheckResult:
    """Warn when a lifecycle stage's share of people moved more than `max_share_change` since the last run."""
    with huaxiang.connect(read_only=True) as conn:
        if not table_exists(conn, "ml.user_lifecycle_history"):
            return dg.AssetCheckResult(passed=True, metadata={"note": "no history yet"})
        counts = conn.execute(
            """
            select as_of_date, lifecycle_stage, count(*) as people from ml.user_lifecycle_history
            where as_of_date in (
                select distinct as_of_date from ml.user_lifecycle_history order by as_of_date desc limit 2
            )
            group by as_of_date, lifecycle_stage
            """
        ).df()
    shares = counts.pivot_table(index="lifecycle_stage", columns="as_of_date", values="people", fill_value=0)
    shares = shares / shares.sum()
    moved = (
        {str(stage): round(float(delta), 4) for stage, delta in (shares.iloc[:, -1] - shares.iloc[:, 0]).items()}
        if shares.shape[1] == 2
        else {}
    )
    drifted = {stage: delta for stage, delta in moved.items() if abs(delta) > config.max_share_change}
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "share_change_by_stage": dg.MetadataValue.json(moved),
            "over_bound": dg.MetadataValue.json(drifted),
        },
    )


@dg.asset_check(asset=dg.AssetKey(["identity", "shared_identifiers"]), blocking=False)
def no_shared_identifiers(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    """Warn about identifiers several people use (marts.identity_shared_identifiers lists them)."""
    with huaxiang.connect(read_only=True) as conn:
        rows = conn.execute(
            "select identifier_type, reason, count(*), max(degree) from identity.shared_identifiers"
            " group by all order by 1, 2"
        ).fetchall()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "shared_identifiers": sum(r[2] for r in rows),
            "by_type_and_reason": dg.MetadataValue.md(
                "| type | reason | identifiers | max degree |\n|---|---|---|---|\n"
                + "\n".join(f"| {t} | {r} | {n} | {d} |" for t, r, n, d in rows)
            ),
        },
    )


class AttributionConfig(dg.Config):
    min_attributed_share: float = 0.95


@dg.asset_check(asset=dg.AssetKey(["marts", "fct_events"]), blocking=False)
def events_attributed_to_a_person(huaxiang: HuaxiangResource, config: AttributionConfig) -> dg.AssetCheckResult:
    """The share of events that identity resolution could attribute to a known person."""
    with huaxiang.connect(read_only=True) as conn:
        events, attributed = conn.execute("select count(*), count(user_key) from marts.fct_events").fetchall()[0]
    share = attributed / events if events else 1.0
    return dg.AssetCheckResult(
        passed=share >= config.min_attributed_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"events": events, "attributed": attributed, "attributed_share": round(share, 4)},
    )


sql_checks = [
    no_shared_identifiers,
    events_attributed_to_a_person,
    no_person_lost_between_dim_users_and_user_profile,
    rfm_segments_cover_every_buyer,
    lifecycle_shares_stable,
]
