with source as (
    select
        *,
        row_number() over (
            partition by order_id order by updated_at desc, file_seq desc, line_number desc
        ) as snapshot_rank
    from {{ source('raw', 'orders') }}
),

renamed as (
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
        -- booleans
        status = 'paid' as is_paid,
        -- timestamps
        ordered_at,
        updated_at
    from source
    where snapshot_rank = 1
)

select * from renamed
