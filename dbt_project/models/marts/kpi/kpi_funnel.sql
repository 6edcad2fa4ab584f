-- Ordered purchase funnel per channel:
-- Product Viewed -> Product Added -> Checkout Started -> Order Completed.
-- Every Product Viewed event starts an attempt in its own channel; each later step must happen strictly
-- after the previous step and no later than `funnel_window_days` (default 7) after the start. A person
-- reaches step k in a channel when any of their attempts started there reaches step k; the `all` rows
-- count each person once whatever channel they started in.
{% set window_days = var('funnel_window_days', 7) %}
{% set steps = ['Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed'] %}

with funnel_events as (
    select user_key, event_name, occurred_at, coalesce(channel, 'unknown') as channel
    from {{ ref('int_events_as_of') }}
    where event_type = 'track'
        and occurred_date <= {{ as_of_date() }}
        and event_name in ('{{ steps | join("', '") }}')
),

attempts as (
    select distinct
        user_key,
        channel,
        occurred_at as started_at,
        {{ dbt.dateadd('day', window_days, 'occurred_at') }} as window_ends_at
    from funnel_events
    where event_name = '{{ steps[0] }}'
),

-- Earliest-next matching: taking the first qualifying event for each step leaves the most room for the rest.
reached_step_2 as (
    select
        attempts.user_key,
        attempts.channel,
        attempts.started_at,
        attempts.window_ends_at,
        min(next_step.occurred_at) as step_2_at
    from attempts
    left join funnel_events as next_step
        on next_step.user_key = attempts.user_key
        and next_step.event_name = '{{ steps[1] }}'
        and next_step.occurred_at > attempts.started_at
        and next_step.occurred_at <= attempts.window_ends_at
    group by attempts.user_key, attempts.channel, attempts.started_at, attempts.window_ends_at
),

reached_step_3 as (
    select
        reached_step_2.user_key,
        reached_step_2.channel,
        reached_step_2.started_at,
        reached_step_2.window_ends_at,
        reached_step_2.step_2_at,
        min(next_step.occurred_at) as step_3_at
    from reached_step_2
    left join funnel_events as next_step
        on next_step.user_key = reached_step_2.user_key
        and next_step.event_name = '{{ steps[2] }}'
        and next_step.occurred_at > reached_step_2.step_2_at
        and next_step.occurred_at <= reached_step_2.window_ends_at
    group by
        reached_step_2.user_key,
        reached_step_2.channel,
        reached_step_2.started_at,
        reached_step_2.window_ends_at,
        reached_step_2.step_2_at
),

reached_step_4 as (
    select
        reached_step_3.user_key,
        reached_step_3.channel,
        reached_step_3.step_2_at,
        reached_step_3.step_3_at,
        min(next_step.occurred_at) as step_4_at
    from reached_step_3
    left join funnel_events as next_step
        on next_step.user_key = reached_step_3.user_key
        and next_step.event_name = '{{ steps[3] }}'
        and next_step.occurred_at > reached_step_3.step_3_at
        and next_step.occurred_at <= reached_step_3.window_ends_at
    group by
        reached_step_3.user_key,
        reached_step_3.channel,
        reached_step_3.started_at,
        reached_step_3.step_2_at,
        reached_step_3.step_3_at
),

attempt_depths as (
    select
        user_key,
        channel,
        case
            when step_4_at is not null then 4
            when step_3_at is not null then 3
            when step_2_at is not null then 2
            else 1
        end as deepest_step
    from reached_step_4
),

person_depths as (
    select channel, user_key, max(deepest_step) as deepest_step
    from attempt_depths
    group by channel, user_key
    union all
    select 'all' as channel, user_key, max(deepest_step) as deepest_step
    from attempt_depths
    group by user_key
),

steps as (
    {% for step in steps %}
    select {{ loop.index }} as step_number, '{{ step }}' as step_name
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

step_users as (
    select
        channels.channel,
        steps.step_number,
        steps.step_name,
        count(person_depths.user_key) as users
    from (select distinct channel from person_depths) as channels
    cross join steps
    left join person_depths
        on person_depths.channel = channels.channel
        and person_depths.deepest_step >= steps.step_number
    group by channels.channel, steps.step_number, steps.step_name
),

with_previous as (
    select
        *,
        lag(users) over (partition by channel order by step_number) as previous_step_users,
        max(case when step_number = 1 then users end) over (partition by channel) as first_step_users
    from step_users
)

select
    channel,
    step_number,
    step_name,
    users,
    case
        when step_number = 1 then cast(1 as double)
        when previous_step_users > 0 then cast(users as double) / previous_step_users
    end as conversion_from_previous,
    cast(users as double) / first_step_users as conversion_from_first
from with_previous
