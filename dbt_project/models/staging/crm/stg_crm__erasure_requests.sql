with source as (
    select
        *,
        row_number() over (partition by request_id order by file_seq, line_number) as copy_rank
    from {{ source('raw', 'erasure_requests') }}
)

select
    request_id,
    identifier_type,
    identifier_value,
    requested_at
from source
where copy_rank = 1
