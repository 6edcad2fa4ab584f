select
    product_id,
    product_name,
    category,
    brand,
    list_price,
    updated_at
from {{ ref('stg_crm__products') }}
