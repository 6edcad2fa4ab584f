-- One row per person: demographics from the latest CRM snapshot, first touch from the earliest event.
with keys as (
    select identifier_type, identifier_value, user_key
    from {{ source('identity', 'identity_map') }}
    where not is_shared
),

first_seen as (
    select keys.user_key, min(identifiers.first_seen_at) as first_seen_at
    from keys
    inner join {{ ref('int_identity_identifiers') }} as identifiers
        on identifiers.identifier_type = keys.identifier_type
        and identifiers.identifier_value = keys.identifier_value
    group by keys.user_key
),

-- The person's CRM id: an orders-only business knows it from orders even without CRM user snapshots.
user_ids as (
    select user_key, min(identifier_value) as user_id
    from keys
    where identifier_type = 'user_id'
    group by user_key
),

crm as (
    select
        keys.user_key,
        users.*,
        row_number() over (partition by keys.user_key order by users.updated_at desc, users.user_id) as crm_rank
    from keys
    inner join {{ ref('stg_crm__users') }} as users
        on keys.identifier_type = 'user_id' and keys.identifier_value = users.user_id
),

-- First and last event with a channel, per person: struct min/max pick whole rows by (occurred_at, event_id)
-- in one hash aggregate, where two row_number() windows would sort the event table twice.
event_touches as (
    select
        user_key,
        min({{ struct_of(['occurred_at', 'event_id', 'channel', 'wechat_scene']) }}) as first_event,
        max({{ struct_of(['occurred_at', 'event_id', 'province', 'city']) }}) as last_event
    from {{ ref('fct_events') }}
    where user_key is not null and channel is not null
    group by user_key
),

first_touch as (
    select user_key, first_event.channel as first_channel, first_event.wechat_scene as first_scene
    from event_touches
),

last_location as (
    select user_key, last_event.province as province, last_event.city as city
    from event_touches
),

first_order_channel as (
    select
        user_key,
        channel,
        row_number() over (partition by user_key order by ordered_at, order_id) as order_rank
    from {{ ref('fct_orders') }}
    where user_key is not null
),

ages as (
    select
        user_key,
        extract(year from {{ as_of_date() }}) - extract(year from birth_date)
        - case
            when extract(month from {{ as_of_date() }}) * 100 + extract(day from {{ as_of_date() }})
                < extract(month from birth_date) * 100 + extract(day from birth_date)
                then 1
            else 0
        end as age
    from crm
    where crm_rank = 1 and birth_date is not null
)

select
    first_seen.user_key,
    user_ids.user_id as crm_user_id,
    coalesce(crm.gender, 'U') as gender,
    case
        when ages.age is null or ages.age < 0 then 'unknown'
        when ages.age < 18 then 'under_18'
        when ages.age < 25 then '18-24'
        when ages.age < 35 then '25-34'
        when ages.age < 45 then '35-44'
        when ages.age < 55 then '45-54'
        else '55+'
    end as age_band,
    coalesce(crm.province, last_location.province) as province,
    coalesce(crm.city, last_location.city) as city,
    first_seen.first_seen_at,
    coalesce(first_touch.first_channel, first_order_channel.channel) as first_channel,
    first_touch.first_scene,
    crm.registered_at,
    crm.member_level,
    crm.user_id is not null as is_registered
from first_seen
left join user_ids on user_ids.user_key = first_seen.user_key
left join crm on crm.user_key = first_seen.user_key and crm.crm_rank = 1
left join ages on ages.user_key = first_seen.user_key
left join first_touch on first_touch.user_key = first_seen.user_key
left join last_location on last_location.user_key = first_seen.user_key
left join first_order_channel
    on first_order_channel.user_key = first_seen.user_key and first_order_channel.order_rank = 1
