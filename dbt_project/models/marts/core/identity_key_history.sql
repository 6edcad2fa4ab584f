-- Old person keys and the keys that replaced them, so tags, audiences and bookmarks can follow a merge.
select old_user_key, new_user_key, reason, changed_at
from {{ source('identity', 'key_history') }}
