-- A table, not a view: the JSON is parsed once here rather than by every model that reads events.
-- Incremental: a run parses only the files landed since the last one (raw.events holds each messageId once).
{{ config(
    materialized=incremental_if_supported(),
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}
{{ require_watermark_columns(['file_seq']) }}

{%- set context_paths = [
    'wechat.appid', 'wechat.openid', 'wechat.unionid', 'wechat.scene', 'channel', 'campaign.name',
    'campaign.source', 'campaign.medium', 'location.region', 'location.city', 'referrer.type', 'referrer.id',
] -%}
{%- set property_paths = [
    'product_id', 'order_id', 'content_id', 'coupon_id', 'group_id', 'path', 'category', 'content_type',
    'coupon', 'query', 'duration_ms', 'price', 'quantity', 'revenue', 'discount',
] -%}
{#- ctx['channel'] / prop['price'] read one item of the lists extracted below (one JSON parse per document). -#}
{%- set ctx, prop = {}, {} -%}
{%- for path in context_paths %}{% do ctx.update({path: list_item('context_fields', loop.index)}) %}{% endfor -%}
{%- for path in property_paths %}{% do prop.update({path: list_item('property_fields', loop.index)}) %}{% endfor -%}
{%- set double = api.Column.translate_type('double') %}

with source as (
    select * from {{ source('raw', 'events') }}
    {% if is_incremental() %}
    where file_seq > (select coalesce(max(file_seq), 0) from {{ this }})
    {% endif %}
),

extracted as (
    select
        *,
        {{ json_texts('context', context_paths) }} as context_fields,
        {{ json_texts('properties', property_paths) }} as property_fields
    from source
),

renamed as (
    select
        -- ids
        message_id as event_id,
        user_id,
        anonymous_id,
        previous_id,
        {{ ctx['wechat.appid'] }} as wechat_appid,
        {{ ctx['wechat.openid'] }} as wechat_openid,
        {{ ctx['wechat.unionid'] }} as wechat_unionid,
        traits_phone_hash,
        {{ prop['product_id'] }} as product_id,
        {{ prop['order_id'] }} as order_id,
        {{ prop['content_id'] }} as content_id,
        {{ prop['coupon_id'] }} as coupon_id,
        {{ prop['group_id'] }} as group_id,
        -- strings
        event_type,
        coalesce(event_name, page_name) as event_name,
        case
            when {{ ctx['channel'] }} is null then null
            when {{ ctx['channel'] }} in ('miniprogram', 'official_account', 'app', 'web', 'offline_store')
                then {{ ctx['channel'] }}
            else 'other'
        end as channel,
        {{ ctx['wechat.scene'] }} as wechat_scene,
        {{ ctx['campaign.name'] }} as campaign_name,
        {{ ctx['campaign.source'] }} as campaign_source,
        {{ ctx['campaign.medium'] }} as campaign_medium,
        {{ ctx['location.region'] }} as province,
        {{ ctx['location.city'] }} as city,
        {{ ctx['referrer.type'] }} as referrer_type,
        {{ ctx['referrer.id'] }} as referrer_id,
        {{ prop['path'] }} as page_path,
        {{ prop['category'] }} as product_category,
        {{ prop['content_type'] }} as content_type,
        {{ prop['coupon'] }} as coupon_code,
        {{ prop['query'] }} as search_query,
        -- numerics
        {{ dbt.safe_cast(prop['duration_ms'], double) }} / 1000.0 as duration_seconds,
        {{ dbt.safe_cast(prop['price'], double) }} as price,
        {{ dbt.safe_cast(prop['quantity'], double) }} as quantity,
        {{ dbt.safe_cast(prop['revenue'], double) }} as revenue,
        {{ dbt.safe_cast(prop['discount'], double) }} as discount,
        -- timestamps
        occurred_at,
        -- lineage
        source_file,
        line_number,
        file_seq,
        properties,
        traits
    from extracted
)

select * from renamed
