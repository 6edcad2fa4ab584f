-- Each order as it stood at the end of the as-of day: a refund landed later does not rewrite the past.
with snapshots as (
    select *
    from {{ ref('stg_crm__order_snapshots') }}
    where {{ local_date('updated_at') }} <= {{ as_of_date() }}
        and {{ local_date('ordered_at') }} <= {{ as_of_date() }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, file_seq desc, line_number desc
        ) as snapshot_rank
    from snapshots
),

keys as (
    select identifier_type, identifier_value, user_key
    from {{ source('identity', 'identity_map') }}
    where not is_shared
)

select
    ranked.order_id,
    coalesce(by_user.user_key, by_phone.user_key) as user_key,
    ranked.channel,
    ranked.status,
    ranked.status = 'paid' as is_paid,
    ranked.coupon_code is not null as has_coupon,
    ranked.paid_amount,
    ranked.discount_amount,
    ranked.ordered_at,
    {{ local_date('ranked.ordered_at') }} as ordered_date
from ranked
left join keys as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = ranked.user_id
left join keys as by_phone
    on by_phone.identifier_type = 'phone' and by_phone.identifier_value = ranked.phone_hash
where ranked.snapshot_rank = 1
