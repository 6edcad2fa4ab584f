select
    members.user_key,
    members.tag,
    catalogue.label_zh,
    catalogue.label_en
from {{ source('ml', 'user_tags') }} as members
inner join {{ source('ml', 'tag_catalogue') }} as catalogue on catalogue.tag = members.tag
