select
    identifier_type,
    identifier_value,
    user_key,
    is_shared
from {{ source('identity', 'identity_map') }}
