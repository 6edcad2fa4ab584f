-- The latest snapshot of each order (greatest updated_at; ties go to the later-landed row).
with ranked as (
    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, file_seq desc, line_number desc
        ) as snapshot_rank
    from {{ ref('stg_crm__order_snapshots') }}
)

select
    order_id,
    user_id,
    phone_hash,
    store_id,
    channel,
    status,
    coupon_code,
    paid_amount,
    discount_amount,
    status = 'paid' as is_paid,
    ordered_at,
    updated_at
from ranked
where snapshot_rank = 1
