with source as (
    select
        *,
        row_number() over (
            partition by order_id, line_no order by file_seq desc, line_number desc
        ) as snapshot_rank
    from {{ source('raw', 'order_items') }}
)

select
    -- ids
    {{ dbt.concat(['order_id', "'-'", dbt.safe_cast('line_no', api.Column.translate_type('string'))]) }}
        as order_item_id,
    order_id,
    line_no,
    product_id,
    -- numerics
    quantity,
    unit_price,
    quantity * unit_price as line_amount
from source
where snapshot_rank = 1
