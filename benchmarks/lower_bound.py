"""The speed floor: one hand-written DuckDB pass from landing files to per-person RFM and engagement.

No Python per record, no orchestration, no checks, no identity stitching: a person is the CRM `user_id`
(events: `userId`, else `anonymousId`; orders: `user_id`, else the guest's phone). Whatever Huaxiang does
beyond this (validation, quarantine, stitching, tests, publishing) is the price of its guarantees.

Usage: ``python -m benchmarks.lower_bound --landing DIR --as-of YYYY-MM-DD --out features.parquet``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from string import Template

import duckdb

SESSION_GAP_MINUTES = 30

# $-placeholders are filled from the command line (paths, a date, a zone name), never from data.
LOWER_BOUND_SQL = Template(
    """
create or replace table person_features as
with raw_events as (
    select *
    from read_json(
        '$landing/events/**/*.jsonl*',
        format = 'newline_delimited',
        ignore_errors = true,
        columns = {
            messageId: 'VARCHAR', type: 'VARCHAR', event: 'VARCHAR', userId: 'VARCHAR',
            anonymousId: 'VARCHAR', timestamp: 'VARCHAR',
            properties: 'STRUCT(content_type VARCHAR, duration_ms BIGINT)'
        }
    )
),

events as (
    select
        coalesce(userId, anonymousId) as person_id,
        event as event_name,
        properties.content_type as content_type,
        timezone('$timezone', try_cast(timestamp as timestamptz)) as local_at
    from raw_events
    where messageId is not null
        and type in ('track', 'page', 'screen')
        and coalesce(userId, anonymousId) is not null
        and cast(timezone('$timezone', try_cast(timestamp as timestamptz)) as date) <= date '$as_of'
    qualify row_number() over (partition by messageId) = 1
),

session_starts as (
    select
        person_id,
        case
            when lag(local_at) over (partition by person_id order by local_at) is null then 1
            when local_at - lag(local_at) over (partition by person_id order by local_at)
                > interval $session_gap minute then 1
            else 0
        end as starts_session
    from events
),

sessions as (
    select person_id, cast(sum(starts_session) as bigint) as sessions
    from session_starts
    group by person_id
),

engagement as (
    select
        person_id,
        count(*) as events,
        count(distinct case when cast(local_at as date) > date '$as_of' - 30 then cast(local_at as date) end)
            as active_days_30,
        count(distinct case when cast(local_at as date) > date '$as_of' - 90 then cast(local_at as date) end)
            as active_days_90,
        avg(case when hour(local_at) >= 5 and hour(local_at) < 11 then 1.0 else 0.0 end) as share_morning,
        avg(case when hour(local_at) >= 11 and hour(local_at) < 18 then 1.0 else 0.0 end) as share_daytime,
        avg(case when hour(local_at) >= 18 and hour(local_at) < 23 then 1.0 else 0.0 end) as share_evening,
        avg(case when hour(local_at) >= 23 or hour(local_at) < 5 then 1.0 else 0.0 end) as share_late_night,
        count(*) filter (where event_name = 'Content Viewed') as content_views,
        count(*) filter (where event_name = 'Content Viewed' and content_type = 'article')
            / nullif(count(*) filter (where event_name = 'Content Viewed'), 0) as share_article,
        count(*) filter (where event_name = 'Content Viewed' and content_type = 'video')
            / nullif(count(*) filter (where event_name = 'Content Viewed'), 0) as share_video,
        count(*) filter (where event_name = 'Content Viewed' and content_type = 'live')
            / nullif(count(*) filter (where event_name = 'Content Viewed'), 0) as share_live
    from events
    group by person_id
),

order_snapshots as (
    select
        order_id,
        coalesce(nullif(user_id, ''), phone) as person_id,
        status,
        try_cast(ordered_at as timestamp) as ordered_at,
        try_cast(paid_amount as decimal(18, 2)) as paid_amount,
        try_cast(updated_at as timestamp) as updated_at
    from read_csv('$landing/orders/*.csv', header = true, all_varchar = true)
),

latest_orders as (
    select *
    from order_snapshots
    where ordered_at is not null and paid_amount is not null and updated_at is not null
        and cast(updated_at as date) <= date '$as_of'
        and cast(ordered_at as date) <= date '$as_of'
    qualify row_number() over (partition by order_id order by updated_at desc) = 1
),

rfm as (
    select
        person_id,
        date '$as_of' - max(cast(ordered_at as date)) as recency_days,
        count(*) as frequency,
        sum(paid_amount) as monetary
    from latest_orders
    where status = 'paid' and person_id is not null
    group by person_id
)

select
    coalesce(engagement.person_id, rfm.person_id) as person_id,
    rfm.recency_days,
    coalesce(rfm.frequency, 0) as frequency,
    coalesce(rfm.monetary, 0) as monetary,
    coalesce(engagement.events, 0) as events,
    coalesce(engagement.active_days_30, 0) as active_days_30,
    coalesce(engagement.active_days_90, 0) as active_days_90,
    coalesce(sessions.sessions, 0) as sessions,
    engagement.share_morning,
    engagement.share_daytime,
    engagement.share_evening,
    engagement.share_late_night,
    coalesce(engagement.content_views, 0) as content_views,
    engagement.share_article,
    engagement.share_video,
    engagement.share_live
from engagement
full outer join rfm on rfm.person_id = engagement.person_id
left join sessions on sessions.person_id = engagement.person_id
"""
)


def lower_bound_sql(landing: Path, as_of: str, timezone: str) -> str:
    """The one statement, bound to a landing folder, an as-of date and the business timezone."""
    return LOWER_BOUND_SQL.substitute(
        landing=landing.resolve().as_posix(), as_of=as_of, timezone=timezone, session_gap=SESSION_GAP_MINUTES
    )


def compute_person_features(
    landing: Path, as_of: str, timezone: str = "Asia/Shanghai"
) -> duckdb.DuckDBPyConnection:
    """Run the pass in a fresh in-memory DuckDB; the result is the table `person_features`."""
    conn = duckdb.connect()
    conn.execute(lower_bound_sql(landing, as_of, timezone))
    return conn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--as-of", dest="as_of", required=True)
    parser.add_argument("--timezone", default="Asia/Shanghai")
    parser.add_argument("--out", type=Path, help="write the features as Parquet here (outside the timing)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    conn = compute_person_features(args.landing, args.as_of, args.timezone)
    people = conn.execute("select count(*) from person_features").fetchall()[0][0]
    print(f"lower bound: {people} people in {time.perf_counter() - started:.2f}s")
    if args.out:
        conn.execute("copy person_features to ? (format parquet)", [str(args.out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
