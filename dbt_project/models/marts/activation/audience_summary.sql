-- One row per audience: how many people its rule selects, how many consent excludes, treatment and control.
select
    audience,
    purpose,
    description,
    rule,
    owner,
    control_share,
    matched_people,
    excluded_without_marketing_consent,
    excluded_without_profiling_consent,
    members,
    treatment_members,
    control_members,
    actual_control_share,
    as_of_date
from {{ source('activation', 'audience_summary') }}
