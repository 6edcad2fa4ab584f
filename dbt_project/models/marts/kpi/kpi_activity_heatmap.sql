-- Attributed track/page/screen events by local weekday (0 = Monday) and hour of day: a full 7 x 24 grid,
-- zero where nothing happened.
{% set week_start = 'cast(' ~ dbt.date_trunc('week', 'occurred_date') ~ ' as date)' %}

with events as (
    select
        event_id,
        user_key,
        {{ dbt.datediff(week_start, 'occurred_date', 'day') }} as weekday,
        occurred_hour as hour_of_day
    from {{ ref('int_events_as_of') }}
    where occurred_date <= {{ as_of_date() }}
),

digits as (
    select 0 as digit union all select 1 union all select 2 union all select 3 union all select 4
    union all select 5 union all select 6 union all select 7 union all select 8 union all select 9
),

grid as (
    select
        weekdays.digit as weekday,
        tens.digit * 10 + ones.digit as hour_of_day
    from digits as weekdays
    cross join digits as tens
    cross join digits as ones
    where weekdays.digit < 7 and tens.digit * 10 + ones.digit < 24
)

select
    grid.weekday,
    grid.hour_of_day,
    count(events.event_id) as events,
    count(distinct events.user_key) as users
from grid
left join events
    on events.weekday = grid.weekday
    and events.hour_of_day = grid.hour_of_day
group by grid.weekday, grid.hour_of_day
