-- One row per behavioural cluster with its auto-written persona.
select
    {{ dbt.safe_cast('cluster_id', api.Column.translate_type('string')) }} as cluster_id,
    name_zh,
    name_en,
    size,
    share,
    description_zh,
    description_en,
    typical_gender,
    typical_age_band,
    top_features,
    top_provinces,
    top_categories
from {{ source('ml', 'personas') }}
