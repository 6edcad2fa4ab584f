-- Attributed activity up to the end of the as-of day. A view: a filter over fct_events, which already holds
-- the local calendar day and hour, so no consumer pays for a copy of the event table.
{{ config(materialized='view') }}

select
    user_key,
    event_id,
    event_type,
    event_name,
    occurred_at,
    occurred_date,
    occurred_hour,
    channel,
    wechat_scene,
    referrer_type,
    referrer_id,
    product_id,
    product_category,
    content_type,
    duration_seconds
from {{ ref('fct_events') }}
where user_key is not null
    and occurred_date <= {{ as_of_date() }}
    and event_type in ('track', 'page', 'screen')
