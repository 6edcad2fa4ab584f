-- A table, not a view: the JSON is parsed once here rather than by every model that reads events.
{{ config(materialized="table") }}

with source as (
    select * from {{ source('raw', 'events') }}
),

renamed as (
    select
        -- ids
        message_id as event_id,
        user_id,
        anonymous_id,
        previous_id,
        {{ json_text('context', 'wechat.appid') }} as wechat_appid,
        {{ json_text('context', 'wechat.openid') }} as wechat_openid,
        {{ json_text('context', 'wechat.unionid') }} as wechat_unionid,
        traits_phone_hash,
        {{ json_text('properties', 'product_id') }} as product_id,
        {{ json_text('properties', 'order_id') }} as order_id,
        {{ json_text('properties', 'content_id') }} as content_id,
        {{ json_text('properties', 'coupon_id') }} as coupon_id,
        {{ json_text('properties', 'group_id') }} as group_id,
        -- strings
        event_type,
        coalesce(event_name, page_name) as event_name,
        case
            when {{ json_text('context', 'channel') }} is null then null
            when {{ json_text('context', 'channel') }}
                in ('miniprogram', 'official_account', 'app', 'web', 'offline_store')
                then {{ json_text('context', 'channel') }}
            else 'other'
        end as channel,
        {{ json_text('context', 'wechat.scene') }} as wechat_scene,
        {{ json_text('context', 'campaign.name') }} as campaign_name,
        {{ json_text('context', 'campaign.source') }} as campaign_source,
        {{ json_text('context', 'campaign.medium') }} as campaign_medium,
        {{ json_text('context', 'location.region') }} as province,
        {{ json_text('context', 'location.city') }} as city,
        {{ json_text('context', 'referrer.type') }} as referrer_type,
        {{ json_text('context', 'referrer.id') }} as referrer_id,
        {{ json_text('properties', 'path') }} as page_path,
        {{ json_text('properties', 'category') }} as product_category,
        {{ json_text('properties', 'content_type') }} as content_type,
        {{ json_text('properties', 'coupon') }} as coupon_code,
        {{ json_text('properties', 'query') }} as search_query,
        -- numerics
        {{ dbt.safe_cast(json_text('properties', 'duration_ms'), api.Column.translate_type('double')) }}
            / 1000.0 as duration_seconds,
        {{ dbt.safe_cast(json_text('properties', 'price'), api.Column.translate_type('double')) }} as price,
        {{ dbt.safe_cast(json_text('properties', 'quantity'), api.Column.translate_type('double')) }} as quantity,
        {{ dbt.safe_cast(json_text('properties', 'revenue'), api.Column.translate_type('double')) }} as revenue,
        {{ dbt.safe_cast(json_text('properties', 'discount'), api.Column.translate_type('double')) }} as discount,
        -- timestamps
        occurred_at,
        -- lineage
        source_file,
        line_number,
        properties,
        traits
    from source
)

select * from renamed
