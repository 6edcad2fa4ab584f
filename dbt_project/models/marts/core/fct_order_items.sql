-- Order lines of known orders, with the product's category and brand; lines of unknown orders are kept
-- out here and counted by the `order_items_without_order` test.
select
    items.order_item_id,
    items.order_id,
    orders.user_key,
    items.line_no,
    items.product_id,
    coalesce(products.category, 'unknown') as category,
    coalesce(products.brand, 'unknown') as brand,
    items.quantity,
    items.unit_price,
    items.line_amount,
    orders.status,
    orders.is_paid,
    orders.ordered_at
from {{ ref('stg_crm__order_items') }} as items
inner join {{ ref('fct_orders') }} as orders on orders.order_id = items.order_id
left join {{ ref('dim_products') }} as products on products.product_id = items.product_id
