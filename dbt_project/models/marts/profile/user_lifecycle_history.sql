-- Every run's lifecycle stage per person (one row per person and as-of date).
select user_key, as_of_date, lifecycle_stage
from {{ source('ml', 'user_lifecycle_history') }}
