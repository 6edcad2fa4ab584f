-- Every identifier ever observed, with when it was first seen: a person may have only one.
with observed as (
    select 'user_id' as identifier_type, user_id as identifier_value, occurred_at as seen_at
    from {{ ref('stg_segment__events') }} where user_id is not null
    union all
    select 'anonymous_id', anonymous_id, occurred_at
    from {{ ref('stg_segment__events') }} where anonymous_id is not null
    union all
    select 'anonymous_id', previous_id, occurred_at
    from {{ ref('stg_segment__events') }} where event_type = 'alias' and previous_id is not null
    union all
    select 'openid', wechat_openid, occurred_at
    from {{ ref('stg_segment__events') }} where wechat_openid is not null
    union all
    select 'unionid', wechat_unionid, occurred_at
    from {{ ref('stg_segment__events') }} where wechat_unionid is not null
    union all
    select 'phone', traits_phone_hash, occurred_at
    from {{ ref('stg_segment__events') }} where traits_phone_hash is not null
    union all
    select 'user_id', user_id, coalesce(registered_at, updated_at) from {{ ref('stg_crm__users') }}
    union all
    select 'phone', phone_hash, coalesce(registered_at, updated_at)
    from {{ ref('stg_crm__users') }} where phone_hash is not null
    union all
    select 'unionid', unionid, coalesce(registered_at, updated_at)
    from {{ ref('stg_crm__users') }} where unionid is not null
    union all
    select 'user_id', user_id, ordered_at from {{ ref('stg_crm__orders') }} where user_id is not null
    union all
    select 'phone', phone_hash, ordered_at from {{ ref('stg_crm__orders') }} where phone_hash is not null
)

select identifier_type, identifier_value, min(seen_at) as first_seen_at
from observed
group by identifier_type, identifier_value
