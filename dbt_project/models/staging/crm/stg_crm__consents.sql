-- Latest decision per person and purpose; the contract's defaults apply where there is none.
with source as (
    select
        *,
        row_number() over (
            partition by user_id, purpose order by recorded_at desc, file_seq desc, line_number desc
        ) as decision_rank
    from {{ source('raw', 'consents') }}
)

select
    user_id,
    purpose,
    granted as is_granted,
    recorded_at
from source
where decision_rank = 1
