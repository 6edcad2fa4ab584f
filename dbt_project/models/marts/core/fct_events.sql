-- One row per unique messageId, attributed to a person through the strongest identifier it carries.
with events as (
    select * from {{ ref('stg_segment__events') }}
),

keys as (
    select identifier_type, identifier_value, user_key
    from {{ source('identity', 'identity_map') }}
    where not is_shared
)

select
    events.event_id,
    coalesce(by_user.user_key, by_device.user_key, by_openid.user_key) as user_key,
    events.event_type,
    events.event_name,
    events.occurred_at,
    {{ local_date('events.occurred_at') }} as occurred_date,
    events.channel,
    events.wechat_scene,
    events.campaign_name,
    events.province,
    events.city,
    events.referrer_type,
    events.referrer_id,
    events.page_path,
    events.product_id,
    events.product_category,
    events.order_id,
    events.content_id,
    events.content_type,
    events.coupon_id,
    events.group_id,
    events.duration_seconds,
    events.price,
    events.quantity,
    events.revenue,
    events.discount,
    events.user_id,
    events.anonymous_id,
    events.wechat_openid
from events
left join keys as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = events.user_id
left join keys as by_device
    on by_device.identifier_type = 'anonymous_id' and by_device.identifier_value = events.anonymous_id
left join keys as by_openid
    on by_openid.identifier_type = 'openid' and by_openid.identifier_value = events.wechat_openid
