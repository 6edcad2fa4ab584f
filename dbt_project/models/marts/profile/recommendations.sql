-- Top products per person (only people with personalization consent), best first.
select
    recs.user_key,
    recs.product_id,
    products.product_name,
    products.category,
    recs.rank,
    recs.score,
    recs.reason
from {{ source('ml', 'recommendations') }} as recs
left join {{ ref('dim_products') }} as products on products.product_id = recs.product_id
