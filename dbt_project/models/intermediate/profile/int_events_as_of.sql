-- Attributed activity up to the end of the as-of day, with local calendar day and hour.
select
    user_key,
    event_id,
    event_type,
    event_name,
    occurred_at,
    occurred_date,
    {{ local_hour('occurred_at') }} as occurred_hour,
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
