-- Every landed snapshot of every order: point-in-time models pick the latest one as of a date.
select
    -- ids
    order_id,
    user_id,
    phone as phone_hash,
    store_id,
    -- strings
    coalesce(channel, 'other') as channel,
    status,
    coupon_code,
    -- numerics
    paid_amount,
    coalesce(discount_amount, 0) as discount_amount,
    -- timestamps
    ordered_at,
    updated_at,
    -- lineage
    file_seq,
    line_number
from {{ source('raw', 'orders') }}
