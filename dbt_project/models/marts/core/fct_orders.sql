-- Latest snapshot of every order, attributed by CRM user_id, or by phone for offline guest orders.
-- Incremental: a run (re)builds only orders with a snapshot or an order line in a newly landed file, and
-- orders whose buyer's identifiers changed person in identity resolution since the last build.
{{ config(
    materialized=incremental_if_supported(),
    unique_key='order_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}
{{ require_watermark_columns(['file_seq', 'identity_version']) }}

with keys as (
    select identifier_type, identifier_value, user_key, is_shared, changed_in_run
    from {{ source('identity', 'identity_map') }}
),

-- The newest landed file that touched each order, through a snapshot or one of its lines.
landed as (
    select order_id, max(file_seq) as file_seq
    from (
        select order_id, file_seq from {{ ref('stg_crm__order_snapshots') }}
        union all
        select order_id, file_seq from {{ source('raw', 'order_items') }}
    ) as touches
    group by order_id
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

orders as (
    select latest.*, landed.file_seq
    from {{ ref('stg_crm__orders') }} as latest
    inner join landed on landed.order_id = latest.order_id
    {% if is_incremental() %}
    where landed.file_seq > (select file_seq from built)
        or latest.user_id in (select identifier_value from rekeyed where identifier_type = 'user_id')
        or latest.phone_hash in (select identifier_value from rekeyed where identifier_type = 'phone')
    {% endif %}
),

items as (
    select order_id, count(*) as item_lines, sum(quantity) as item_quantity
    from {{ ref('stg_crm__order_items') }}
    group by order_id
)

select
    orders.order_id,
    coalesce(
        case when not by_user.is_shared then by_user.user_key end,
        case when not by_phone.is_shared then by_phone.user_key end
    ) as user_key,
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
    orders.updated_at,
    orders.file_seq,
    greatest(coalesce(by_user.changed_in_run, 0), coalesce(by_phone.changed_in_run, 0)) as identity_version
from orders
left join keys as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = orders.user_id
left join keys as by_phone
    on by_phone.identifier_type = 'phone' and by_phone.identifier_value = orders.phone_hash
left join items on items.order_id = orders.order_id
