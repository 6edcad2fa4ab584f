-- Cohort retention (PostHog/Amplitude "first time" retention) by week (Monday start) and by month, in
-- local calendar periods. A cohort is the people whose first activity falls in the period; they are
-- retained in period N when active in the Nth period after it (period 0 is the cohort period itself).
-- Activity is an attributed track/page/screen event or a paid order. Periods after the one holding the
-- as-of day are not reported; the one holding it is reported but flagged as incomplete.
{% set grains = ['week', 'month'] %}

with activity as (
    select user_key, occurred_date as activity_date
    from {{ ref('int_events_as_of') }}
    where occurred_date <= {{ as_of_date() }}
    union
    select user_key, ordered_date as activity_date
    from {{ ref('int_orders_as_of') }}
    where is_paid and user_key is not null and ordered_date <= {{ as_of_date() }}
),

activity_periods as (
    {% for grain in grains %}
    select distinct
        '{{ grain }}' as grain,
        user_key,
        cast({{ dbt.date_trunc(grain, 'activity_date') }} as date) as period_start
    from activity
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

cohort_members as (
    select grain, user_key, min(period_start) as cohort
    from activity_periods
    group by grain, user_key
),

cohort_sizes as (
    select grain, cohort, count(*) as cohort_size
    from cohort_members
    group by grain, cohort
),

retained as (
    select
        cohort_members.grain,
        cohort_members.cohort,
        activity_periods.period_start,
        count(*) as retained_users
    from cohort_members
    inner join activity_periods
        on activity_periods.grain = cohort_members.grain
        and activity_periods.user_key = cohort_members.user_key
    group by cohort_members.grain, cohort_members.cohort, activity_periods.period_start
),

digits as (
    select 0 as digit union all select 1 union all select 2 union all select 3 union all select 4
    union all select 5 union all select 6 union all select 7 union all select 8 union all select 9
),

-- 0 .. 9,999 periods (about 190 years of weeks) without an engine-specific series function.
period_numbers as (
    select ones.digit + 10 * tens.digit + 100 * hundreds.digit + 1000 * thousands.digit as period
    from digits as ones
    cross join digits as tens
    cross join digits as hundreds
    cross join digits as thousands
),

-- Every period from the cohort's own up to the one holding the as-of day, so a period nobody came back
-- in still shows up with zero retained people.
cohort_periods as (
    {% for grain in grains %}
    select
        cohort_sizes.grain,
        cohort_sizes.cohort,
        cohort_sizes.cohort_size,
        period_numbers.period,
        cast({{ dbt.dateadd(grain, 'period_numbers.period', 'cohort_sizes.cohort') }} as date)
            as period_start,
        cast({{ dbt.dateadd(grain, 'period_numbers.period + 1', 'cohort_sizes.cohort') }} as date)
            as next_period_start
    from cohort_sizes
    cross join period_numbers
    where cohort_sizes.grain = '{{ grain }}'
        and period_numbers.period <= {{ dbt.datediff(
            'cohort_sizes.cohort',
            'cast(' ~ dbt.date_trunc(grain, as_of_date()) ~ ' as date)',
            grain) }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    cohort_periods.grain,
    cohort_periods.cohort,
    cohort_periods.period,
    cohort_periods.period_start,
    cohort_periods.next_period_start <= cast({{ dbt.dateadd('day', 1, as_of_date()) }} as date)
        as is_period_complete,
    cohort_periods.cohort_size,
    coalesce(retained.retained_users, 0) as retained_users,
    cast(coalesce(retained.retained_users, 0) as double) / cohort_periods.cohort_size as retention_rate
from cohort_periods
left join retained
    on retained.grain = cohort_periods.grain
    and retained.cohort = cohort_periods.cohort
    and retained.period_start = cohort_periods.period_start
