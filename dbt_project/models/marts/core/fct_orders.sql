-- Latest snapshot of every order, attributed by CRM user_id, or by phone for offline guest orders.
with orders as (
    select * from {{ ref('stg_crm__orders') }}
),

keys as (
    select identifier_type, identifier_value, user_key
    from {{ source('identity', 'identity_map') }}
    where not is_shared
),

items as (
    select order_id, count(*) as item_lines, sum(quantity) as item_quantity
    from {{ ref('stg_crm__order_items') }}
    group by order_id
)

select
    orders.order_id,
    coalesce(by_user.user_key, by_phone.user_key) as user_key,
    orders.user_id as crm_user_id,
    orders.store_id,
    orders.channel,
    orders.status,
    orders.is_paid,
    orders.coupon_code,
    orders.coupon_code is not null as has_coupon,
    orders.paid_amount,
    orders.discount_amount,
    coalesce(items.item_lines, 0) as item_lines,
    coalesce(items.item_quantity, 0) as item_quantity,
    orders.ordered_at,
    {{ local_date('orders.ordered_at') }} as ordered_date,
    orders.updated_at
from orders
left join keys as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = orders.user_id
left join keys as by_phone
    on by_phone.identifier_type = 'phone' and by_phone.identifier_value = orders.phone_hash
left join items on items.order_id = orders.order_id
