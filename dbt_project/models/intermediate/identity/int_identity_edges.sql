-- Every pair of identifiers that some record proves belong to one person, with the earliest proof.
with event_pairs as (
    select 'user_id' as left_type, user_id as left_value, 'anonymous_id' as right_type,
           anonymous_id as right_value, 'event' as source, event_id as record_id, occurred_at as observed_at
    from {{ ref('stg_segment__events') }}
    where user_id is not null and anonymous_id is not null
    union all
    select 'openid', wechat_openid, 'unionid', wechat_unionid, 'event', event_id, occurred_at
    from {{ ref('stg_segment__events') }}
    where wechat_openid is not null and wechat_unionid is not null
    union all
    select 'openid', wechat_openid,
           case when user_id is not null then 'user_id' else 'anonymous_id' end,
           coalesce(user_id, anonymous_id), 'event', event_id, occurred_at
    from {{ ref('stg_segment__events') }}
    where wechat_openid is not null
    union all
    select 'phone', traits_phone_hash,
           case when user_id is not null then 'user_id' else 'anonymous_id' end,
           coalesce(user_id, anonymous_id), 'identify', event_id, occurred_at
    from {{ ref('stg_segment__events') }}
    where traits_phone_hash is not null
    union all
    select 'anonymous_id', previous_id,
           case when user_id is not null then 'user_id' else 'anonymous_id' end,
           coalesce(user_id, anonymous_id), 'alias', event_id, occurred_at
    from {{ ref('stg_segment__events') }}
    where event_type = 'alias' and previous_id is not null
),

crm_pairs as (
    select 'user_id' as left_type, user_id as left_value, 'phone' as right_type, phone_hash as right_value,
           'crm_user' as source, user_id as record_id, updated_at as observed_at
    from {{ ref('stg_crm__users') }}
    where phone_hash is not null
    union all
    select 'user_id', user_id, 'unionid', unionid, 'crm_user', user_id, updated_at
    from {{ ref('stg_crm__users') }}
    where unionid is not null
    union all
    select 'user_id', user_id, 'phone', phone_hash, 'order', order_id, ordered_at
    from {{ ref('stg_crm__orders') }}
    where user_id is not null and phone_hash is not null
),

all_pairs as (
    select * from event_pairs
    union all
    select * from crm_pairs
),

-- The earliest proof of each pair, ordered by (observed_at, source, record_id): a hash aggregate over a
-- struct, 2.7x faster than ranking every pair with row_number() (1M events).
earliest as (
    select
        left_type,
        left_value,
        right_type,
        right_value,
        min({{ struct_of(['observed_at', 'source', 'record_id']) }}) as proof
    from all_pairs
    where not (left_type = right_type and left_value = right_value)
    group by left_type, left_value, right_type, right_value
)

select
    left_type,
    left_value,
    right_type,
    right_value,
    proof.source as source,
    proof.record_id as record_id,
    proof.observed_at as observed_at
from earliest
