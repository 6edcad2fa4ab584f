-- For every link that joined two identifiers into one person, the record that proved it.
-- "Why are these two one person?" -- see docs/identity.md for the one query that answers it.
select left_type, left_value, right_type, right_value, source, record_id, observed_at, user_key
from {{ source('identity', 'merge_audit') }}
