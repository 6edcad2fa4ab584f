-- One row per local day from the first activity to the as-of day. A person is active on a day when they
-- have an attributed track/page/screen event or a paid order that day; wau and mau count distinct people
-- active in the trailing 7 and 30 days ending on (and including) that day.
with activity as (
    select user_key, occurred_date as activity_date
    from {{ ref('int_events_as_of') }}
    where occurred_date <= {{ as_of_date() }}
    union
    select user_key, ordered_date as activity_date
    from {{ ref('int_orders_as_of') }}
    where is_paid and user_key is not null and ordered_date <= {{ as_of_date() }}
),

digits as (
    select 0 as digit union all select 1 union all select 2 union all select 3 union all select 4
    union all select 5 union all select 6 union all select 7 union all select 8 union all select 9
),

-- 0 .. 99,999 days (about 270 years) without an engine-specific series function.
day_offsets as (
    select
        ones.digit + 10 * tens.digit + 100 * hundreds.digit + 1000 * thousands.digit
        + 10000 * ten_thousands.digit as day_offset
    from digits as ones
    cross join digits as tens
    cross join digits as hundreds
    cross join digits as thousands
    cross join digits as ten_thousands
),

bounds as (
    select min(activity_date) as first_activity_date
    from activity
),

calendar as (
    select cast({{ dbt.dateadd('day', 'day_offsets.day_offset', 'bounds.first_activity_date') }} as date)
        as activity_date
    from bounds
    cross join day_offsets
    where day_offsets.day_offset <= {{ dbt.datediff('bounds.first_activity_date', as_of_date(), 'day') }}
),

trailing_windows as (
    select
        activity_date,
        cast({{ dbt.dateadd('day', -6, 'activity_date') }} as date) as week_starts_on,
        cast({{ dbt.dateadd('day', -29, 'activity_date') }} as date) as month_starts_on
    from calendar
),

counts as (
    select
        trailing_windows.activity_date,
        count(distinct case
            when activity.activity_date = trailing_windows.activity_date then activity.user_key
        end) as dau,
        count(distinct case
            when activity.activity_date >= trailing_windows.week_starts_on then activity.user_key
        end) as wau,
        count(distinct activity.user_key) as mau
    from trailing_windows
    left join activity
        on activity.activity_date <= trailing_windows.activity_date
        and activity.activity_date >= trailing_windows.month_starts_on
    group by trailing_windows.activity_date
)

select
    activity_date,
    dau,
    wau,
    mau,
    case when mau > 0 then cast(dau as double) / mau end as stickiness
from counts
