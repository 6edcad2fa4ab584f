-- Stage changes between consecutive runs: how many people moved from one stage to another.
with history as (
    select
        user_key,
        as_of_date,
        lifecycle_stage,
        lag(lifecycle_stage) over (partition by user_key order by as_of_date) as previous_stage,
        lag(as_of_date) over (partition by user_key order by as_of_date) as previous_as_of_date
    from {{ source('ml', 'user_lifecycle_history') }}
)

select
    previous_as_of_date as from_date,
    as_of_date as to_date,
    previous_stage as from_stage,
    lifecycle_stage as to_stage,
    count(*) as users
from history
where previous_stage is not null
group by previous_as_of_date, as_of_date, previous_stage, lifecycle_stage
