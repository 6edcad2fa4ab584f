select tag, tag_family, label_zh, label_en, description, rule, owner, members
from {{ source('ml', 'tag_catalogue') }}
