-- One row per unique messageId, attributed to a person through the strongest identifier it carries.
-- Incremental: a run (re)builds only events from newly landed files and events carrying an identifier whose
-- person changed in identity resolution since the last build (identity_version is the newest such change).
{{ config(
    materialized=incremental_if_supported(),
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}
{{ require_watermark_columns(['file_seq', 'identity_version']) }}

with keys as (
    select identifier_type, identifier_value, user_key, is_shared, changed_in_run
    from {{ source('identity', 'identity_map') }}
),

{% if is_incremental() %}
built as (
    select coalesce(max(file_seq), 0) as file_seq, coalesce(max(identity_version), 0) as identity_version
    from {{ this }}
),

rekeyed as (
    select identifier_type, identifier_value
    from keys
    where changed_in_run > (select identity_version from built)
),
{% endif %}

events as (
    select *, {{ to_local_time('occurred_at') }} as occurred_local
    from {{ ref('stg_segment__events') }}
    {% if is_incremental() %}
    where file_seq > (select file_seq from built)
        or user_id in (select identifier_value from rekeyed where identifier_type = 'user_id')
        or anonymous_id in (select identifier_value from rekeyed where identifier_type = 'anonymous_id')
        or wechat_openid in (select identifier_value from rekeyed where identifier_type = 'openid')
    {% endif %}
)

select
    events.event_id,
    coalesce(
        case when not by_user.is_shared then by_user.user_key end,
        case when not by_device.is_shared then by_device.user_key end,
        case when not by_openid.is_shared then by_openid.user_key end
    ) as user_key,
    events.event_type,
    events.event_name,
    events.occurred_at,
    cast(events.occurred_local as date) as occurred_date,
    extract(hour from events.occurred_local) as occurred_hour,
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
    events.wechat_openid,
    events.file_seq,
    greatest(
        coalesce(by_user.changed_in_run, 0),
        coalesce(by_device.changed_in_run, 0),
        coalesce(by_openid.changed_in_run, 0)
    ) as identity_version
from events
left join keys as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = events.user_id
left join keys as by_device
    on by_device.identifier_type = 'anonymous_id' and by_device.identifier_value = events.anonymous_id
left join keys as by_openid
    on by_openid.identifier_type = 'openid' and by_openid.identifier_value = events.wechat_openid
