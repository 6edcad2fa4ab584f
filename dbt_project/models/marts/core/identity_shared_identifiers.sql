-- Identifiers used by several people (a family tablet, a store's default phone): never used to merge.
select identifier_type, identifier_value, degree, reason
from {{ source('identity', 'shared_identifiers') }}
