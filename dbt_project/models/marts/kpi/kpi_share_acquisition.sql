-- Share-driven acquisition per sharer. A visitor is brought by a sharer when the visitor's first activity
-- is an event whose referrer is a share naming the sharer (by userId or openid) and no paid order came
-- before it; self-referrals do not count. A sharer is anyone who sent a Product/Content Shared event or whose
-- share someone else opened. k_factor (the same on every row) = all visitors brought / all sharers.
with keys as (
    select identifier_type, identifier_value, user_key
    from {{ source('identity', 'identity_map') }}
    where not is_shared
),

events as (
    select event_id, user_key, event_name, occurred_at, referrer_type, referrer_id
    from {{ ref('int_events_as_of') }}
    where occurred_date <= {{ as_of_date() }}
),

share_visits as (
    select
        events.event_id,
        events.user_key as visitor_key,
        coalesce(by_user.user_key, by_openid.user_key) as sharer_key
    from events
    left join keys as by_user
        on by_user.identifier_type = 'user_id' and by_user.identifier_value = events.referrer_id
    left join keys as by_openid
        on by_openid.identifier_type = 'openid' and by_openid.identifier_value = events.referrer_id
    where events.referrer_type = 'share'
),

-- Each person's first event (struct min by occurred_at, event_id: an aggregate, not a sort of all events).
first_events as (
    select user_key, first_event.event_id as event_id, first_event.occurred_at as occurred_at
    from (
        select user_key, min({{ struct_of(['occurred_at', 'event_id']) }}) as first_event
        from events
        group by user_key
    ) as firsts
),

first_paid_orders as (
    select user_key, min(ordered_at) as first_paid_at
    from {{ ref('int_orders_as_of') }}
    where is_paid and user_key is not null and ordered_date <= {{ as_of_date() }}
    group by user_key
),

brought as (
    select
        share_visits.sharer_key,
        share_visits.visitor_key,
        first_paid_orders.first_paid_at is not null as is_buyer
    from first_events
    inner join share_visits on share_visits.event_id = first_events.event_id
    left join first_paid_orders on first_paid_orders.user_key = first_events.user_key
    where share_visits.sharer_key is not null
        and share_visits.sharer_key <> share_visits.visitor_key
        and (
            first_paid_orders.first_paid_at is null
            or first_paid_orders.first_paid_at >= first_events.occurred_at
        )
),

sharers as (
    select user_key as sharer_key
    from events
    where event_name in ('Product Shared', 'Content Shared')
    union
    select sharer_key
    from share_visits
    where sharer_key is not null and sharer_key <> visitor_key
),

per_sharer as (
    select
        sharers.sharer_key,
        count(brought.visitor_key) as visitors_brought,
        count(case when brought.is_buyer then brought.visitor_key end) as buyers_brought
    from sharers
    left join brought on brought.sharer_key = sharers.sharer_key
    group by sharers.sharer_key
)

select
    sharer_key,
    visitors_brought,
    buyers_brought,
    cast(sum(visitors_brought) over () as double) / count(*) over () as k_factor
from per_sharer
