-- Every consent decision as landed; point-in-time models pick the latest one as of a date.
select
    user_id,
    purpose,
    granted as is_granted,
    recorded_at,
    file_seq,
    line_number
from {{ source('raw', 'consents') }}
