with source as (
    select
        *,
        row_number() over (
            partition by product_id order by updated_at desc, file_seq desc, line_number desc
        ) as snapshot_rank
    from {{ source('raw', 'products') }}
)

select
    product_id,
    product_name,
    coalesce(category, 'unknown') as category,
    coalesce(brand, 'unknown') as brand,
    list_price,
    updated_at
from source
where snapshot_rank = 1
