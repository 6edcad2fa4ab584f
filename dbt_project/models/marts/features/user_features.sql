-- One row per person: behaviour up to the end of the as-of day. Day counts are whole calendar days in
-- HUAXIANG_TIMEZONE; money counts paid orders only (refunded and cancelled excluded).
with people as (
    select user_key, first_seen_at, first_channel, first_scene, province, city
    from {{ ref('dim_users') }}
),

paid as (
    select *
    from {{ ref('int_orders_as_of') }}
    where is_paid and user_key is not null
),

paid_intervals as (
    select
        user_key,
        {{ dbt.datediff(
            'lag(ordered_date) over (partition by user_key order by ordered_at, order_id)',
            'ordered_date', 'day') }} as interval_days
    from paid
),

interval_stats as (
    select
        user_key,
        {{ median('interval_days') }} as median_order_interval_days,
        avg(interval_days) as mean_order_interval_days,
        stddev_samp(interval_days) as stddev_order_interval_days
    from paid_intervals
    where interval_days is not null
    group by user_key
),

order_stats as (
    select
        user_key,
        count(*) as frequency,
        sum(paid_amount) as monetary,
        sum(discount_amount) as discount_amount,
        sum(case when has_coupon then 1 else 0 end) as coupon_orders,
        min(ordered_at) as first_paid_at,
        max(ordered_at) as last_paid_at,
        min(ordered_date) as first_paid_date,
        max(ordered_date) as last_paid_date
    from paid
    group by user_key
),

all_orders as (
    select
        user_key,
        count(*) as orders_placed,
        sum(case when status = 'refunded' then 1 else 0 end) as orders_refunded,
        sum(case when status = 'cancelled' then 1 else 0 end) as orders_cancelled,
        sum(case when channel = 'offline_store' then 1 else 0 end) as offline_orders,
        max(ordered_at) as last_order_at
    from {{ ref('int_orders_as_of') }}
    where user_key is not null
    group by user_key
),

events as (
    select * from {{ ref('int_events_as_of') }}
),

event_stats as (
    select
        user_key,
        count(*) as events,
        max(occurred_at) as last_event_at,
        count(distinct case
            when occurred_date > {{ dbt.dateadd('day', -7, as_of_date()) }} then occurred_date end
        ) as active_days_7,
        count(distinct case
            when occurred_date > {{ dbt.dateadd('day', -30, as_of_date()) }} then occurred_date end
        ) as active_days_30,
        count(distinct case
            when occurred_date > {{ dbt.dateadd('day', -90, as_of_date()) }} then occurred_date end
        ) as active_days_90,
        count(distinct occurred_date) as active_days,
        sum(case when occurred_hour >= 5 and occurred_hour < 11 then 1 else 0 end) as events_morning,
        sum(case when occurred_hour >= 11 and occurred_hour < 18 then 1 else 0 end) as events_daytime,
        sum(case when occurred_hour >= 18 and occurred_hour < 23 then 1 else 0 end) as events_evening,
        sum(case when occurred_hour >= 23 or occurred_hour < 5 then 1 else 0 end) as events_late_night,
        sum(case when event_name = 'Content Viewed' then 1 else 0 end) as content_views,
        sum(case when event_name = 'Content Viewed' and content_type = 'article' then 1 else 0 end) as article_views,
        sum(case when event_name = 'Content Viewed' and content_type = 'video' then 1 else 0 end) as video_views,
        sum(case when event_name = 'Content Viewed' and content_type = 'live' then 1 else 0 end) as live_views,
        {{ exact_sum("case when event_name = 'Content Viewed' and content_type = 'video'
            then coalesce(duration_seconds, 0) else 0 end") }} as video_seconds,
        {{ exact_avg("case when event_type in ('page', 'screen') or event_name = 'Content Viewed'
            then duration_seconds end") }} as avg_dwell_seconds,
        sum(case when event_name in ('Product Shared', 'Content Shared') then 1 else 0 end) as shares_sent,
        sum(case when event_name = 'Group Message Sent' then 1 else 0 end) as group_messages,
        sum(case when event_name = 'Consultation Started' then 1 else 0 end) as consultations,
        max(case when event_name = 'Consultation Started' then occurred_at end) as last_consultation_at,
        sum(case when event_name = 'Coupon Received' then 1 else 0 end) as coupons_received,
        sum(case when event_name = 'Coupon Applied' then 1 else 0 end) as coupons_applied,
        sum(case when event_name = 'Product Viewed' then 1 else 0 end) as product_views,
        sum(case when event_name = 'Product Added' then 1 else 0 end) as cart_adds
    from events
    group by user_key
),

last_channel as (
    select user_key, latest.channel as last_channel
    from (
        select user_key, max({{ struct_of(['occurred_at', 'event_id', 'channel']) }}) as latest
        from events
        where channel is not null
        group by user_key
    ) as latest_events
),

session_stats as (
    select
        user_key,
        count(*) as sessions,
        avg(session_length_seconds) as avg_session_seconds,
        {{ exact_avg('dwell_seconds') }} as avg_session_dwell_seconds
    from {{ ref('fct_sessions') }}
    where {{ local_date('started_at') }} <= {{ as_of_date() }}
    group by user_key
),

-- A share-driven visit names the sharer by userId or openid; credit the person who owns that identifier.
referrals as (
    select sharers.user_key, count(distinct visits.user_key) as visitors_brought
    from (
        select user_key, referrer_id,
            row_number() over (partition by user_key order by occurred_at, event_id) as visit_rank
        from events
        where referrer_type = 'share' and referrer_id is not null
    ) visits
    inner join {{ source('identity', 'identity_map') }} as sharers
        on sharers.identifier_value = visits.referrer_id
        and sharers.identifier_type in ('user_id', 'openid')
        and not sharers.is_shared
    where visits.visit_rank = 1 and sharers.user_key <> visits.user_key
    group by sharers.user_key
),

category_spend as (
    select
        orders.user_key,
        items.category,
        items.brand,
        sum(items.line_amount) as spend
    from {{ ref('fct_order_items') }} as items
    inner join paid as orders on orders.order_id = items.order_id
    group by orders.user_key, items.category, items.brand
),

favourite_category as (
    select user_key, category as favourite_category
    from (
        select user_key, category,
            row_number() over (partition by user_key order by sum(spend) desc, category) as preference_rank
        from category_spend
        group by user_key, category
    ) ranked
    where preference_rank = 1
),

favourite_brand as (
    select user_key, brand as favourite_brand
    from (
        select user_key, brand,
            row_number() over (partition by user_key order by sum(spend) desc, brand) as preference_rank
        from category_spend
        group by user_key, brand
    ) ranked
    where preference_rank = 1
),

item_prices as (
    select
        orders.user_key,
        avg(items.unit_price) as avg_item_price,
        sum(case when products.list_price is not null and items.unit_price >= products.list_price
            then items.quantity else 0 end) * 1.0 / nullif(sum(items.quantity), 0) as full_price_item_share
    from {{ ref('fct_order_items') }} as items
    inner join paid as orders on orders.order_id = items.order_id
    left join {{ ref('dim_products') }} as products on products.product_id = items.product_id
    group by orders.user_key
)

select
    people.user_key,
    -- recency, frequency, monetary (paid orders only)
    {{ dbt.datediff('order_stats.last_paid_date', as_of_date(), 'day') }} as recency_days,
    coalesce(order_stats.frequency, 0) as frequency,
    coalesce(order_stats.monetary, 0) as monetary,
    order_stats.monetary / nullif(order_stats.frequency, 0) as avg_order_value,
    order_stats.discount_amount / nullif(order_stats.monetary + order_stats.discount_amount, 0) as discount_share,
    order_stats.coupon_orders * 1.0 / nullif(order_stats.frequency, 0) as coupon_use_rate,
    interval_stats.median_order_interval_days,
    interval_stats.mean_order_interval_days,
    interval_stats.stddev_order_interval_days,
    order_stats.first_paid_at,
    order_stats.last_paid_at,
    {{ dbt.datediff('order_stats.first_paid_date', as_of_date(), 'day') }} as days_since_first_paid,
    coalesce(all_orders.orders_placed, 0) as orders_placed,
    coalesce(all_orders.orders_refunded, 0) as orders_refunded,
    coalesce(all_orders.orders_cancelled, 0) as orders_cancelled,
    coalesce(all_orders.offline_orders, 0) as offline_orders,
    item_prices.avg_item_price,
    item_prices.full_price_item_share,
    -- activity
    people.first_seen_at,
    {{ dbt.datediff(local_date('people.first_seen_at'), as_of_date(), 'day') }} as days_since_first_seen,
    -- greatest() skips nulls on both DuckDB and Spark
    greatest(event_stats.last_event_at, all_orders.last_order_at) as last_activity_at,
    {{ dbt.datediff(
        local_date('greatest(event_stats.last_event_at, all_orders.last_order_at)'), as_of_date(), 'day'
    ) }} as days_since_last_activity,
    coalesce(event_stats.events, 0) as events,
    coalesce(event_stats.active_days, 0) as active_days,
    coalesce(event_stats.active_days_7, 0) as active_days_7,
    coalesce(event_stats.active_days_30, 0) as active_days_30,
    coalesce(event_stats.active_days_90, 0) as active_days_90,
    coalesce(session_stats.sessions, 0) as sessions,
    session_stats.avg_session_seconds,
    session_stats.avg_session_dwell_seconds,
    event_stats.avg_dwell_seconds,
    -- time of day (local): morning 05-11, daytime 11-18, evening 18-23, late night 23-05
    event_stats.events_morning * 1.0 / nullif(event_stats.events, 0) as share_morning,
    event_stats.events_daytime * 1.0 / nullif(event_stats.events, 0) as share_daytime,
    event_stats.events_evening * 1.0 / nullif(event_stats.events, 0) as share_evening,
    event_stats.events_late_night * 1.0 / nullif(event_stats.events, 0) as share_late_night,
    -- content
    coalesce(event_stats.content_views, 0) as content_views,
    event_stats.article_views * 1.0 / nullif(event_stats.content_views, 0) as share_article,
    event_stats.video_views * 1.0 / nullif(event_stats.content_views, 0) as share_video,
    event_stats.live_views * 1.0 / nullif(event_stats.content_views, 0) as share_live,
    coalesce(event_stats.video_seconds, 0) as video_seconds,
    favourite_category.favourite_category,
    favourite_brand.favourite_brand,
    coalesce(event_stats.product_views, 0) as product_views,
    coalesce(event_stats.cart_adds, 0) as cart_adds,
    -- social and service
    coalesce(event_stats.shares_sent, 0) as shares_sent,
    coalesce(referrals.visitors_brought, 0) as visitors_brought,
    coalesce(event_stats.group_messages, 0) as group_messages,
    coalesce(event_stats.consultations, 0) as consultations,
    event_stats.last_consultation_at,
    coalesce(event_stats.coupons_received, 0) as coupons_received,
    coalesce(event_stats.coupons_applied, 0) as coupons_applied,
    -- where they came from
    people.first_channel,
    last_channel.last_channel,
    people.first_scene,
    people.province,
    people.city
from people
left join order_stats on order_stats.user_key = people.user_key
left join interval_stats on interval_stats.user_key = people.user_key
left join all_orders on all_orders.user_key = people.user_key
left join event_stats on event_stats.user_key = people.user_key
left join last_channel on last_channel.user_key = people.user_key
left join session_stats on session_stats.user_key = people.user_key
left join referrals on referrals.user_key = people.user_key
left join favourite_category on favourite_category.user_key = people.user_key
left join favourite_brand on favourite_brand.user_key = people.user_key
left join item_prices on item_prices.user_key = people.user_key
where people.first_seen_at is not null
    and {{ local_date('people.first_seen_at') }} <= {{ as_of_date() }}
