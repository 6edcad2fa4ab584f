-- Today's members of every marketing audience (catalogue/audiences.yml): only people with marketing
-- (and profiling) consent; is_control marks the held-out control group, never exported.
select
    audience,
    user_key,
    is_control,
    as_of_date
from {{ source('activation', 'audience_members') }}
