-- "People who buy X also buy Y", by product and by category (the `level` column).
select
    level,
    antecedent,
    consequent,
    description,
    support,
    confidence,
    lift,
    leverage,
    conviction
from {{ source('ml', 'association_rules') }}
