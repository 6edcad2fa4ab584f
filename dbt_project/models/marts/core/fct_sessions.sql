-- A session is a person's run of activity with no gap longer than `session_gap_minutes`.
with activity as (
    select
        user_key,
        event_id,
        occurred_at,
        channel,
        duration_seconds,
        lag(occurred_at) over (partition by user_key order by occurred_at, event_id) as previous_at
    from {{ ref('fct_events') }}
    where user_key is not null and event_type in ('track', 'page', 'screen')
),

flagged as (
    select
        *,
        case
            when previous_at is null then 1
            when {{ dbt.datediff('previous_at', 'occurred_at', 'second') }} > {{ var('session_gap_minutes') }} * 60
                then 1
            else 0
        end as starts_session
    from activity
),

numbered as (
    select
        *,
        sum(starts_session) over (
            partition by user_key order by occurred_at, event_id rows between unbounded preceding and current row
        ) as session_number
    from flagged
)

select
    {{ dbt.concat(['user_key', "'-'", dbt.safe_cast('session_number', api.Column.translate_type('string'))]) }}
        as session_id,
    user_key,
    session_number,
    -- the channel of the session's first event (a struct min instead of one more window sort)
    min({{ struct_of(['occurred_at', 'event_id', 'channel']) }}).channel as entry_channel,
    min(occurred_at) as started_at,
    max(occurred_at) as ended_at,
    count(*) as event_count,
    {{ dbt.datediff('min(occurred_at)', 'max(occurred_at)', 'second') }} as session_length_seconds,
    coalesce({{ exact_sum('duration_seconds') }}, 0) as dwell_seconds
from numbered
group by user_key, session_number
