-- Consent per person and purpose. The contract's defaults apply where a person has no decision:
-- profiling and personalization granted, marketing not granted. A person with several CRM ids
-- (not possible under the default merge guard) is granted only if every id is.
with latest as (
    select
        user_id,
        purpose,
        is_granted,
        row_number() over (
            partition by user_id, purpose order by recorded_at desc, file_seq desc, line_number desc
        ) as decision_rank
    from {{ ref('stg_crm__consents') }}
    where {{ local_date('recorded_at') }} <= {{ as_of_date() }}
),

decisions as (
    select keys.user_key, latest.purpose, latest.is_granted
    from latest
    inner join {{ source('identity', 'identity_map') }} as keys
        on keys.identifier_type = 'user_id' and keys.identifier_value = latest.user_id and not keys.is_shared
    where latest.decision_rank = 1
),

per_person as (
    select
        user_key,
        min(case when purpose = 'profiling' then (case when is_granted then 1 else 0 end) end) as profiling,
        min(case when purpose = 'personalization' then (case when is_granted then 1 else 0 end) end)
            as personalization,
        min(case when purpose = 'marketing' then (case when is_granted then 1 else 0 end) end) as marketing
    from decisions
    group by user_key
)

select
    people.user_key,
    coalesce(per_person.profiling, 1) = 1 as has_profiling_consent,
    coalesce(per_person.personalization, 1) = 1 as has_personalization_consent,
    coalesce(per_person.marketing, 0) = 1 as has_marketing_consent
from {{ ref('dim_users') }} as people
left join per_person on per_person.user_key = people.user_key
