-- The one wide row per person that BI reads: profile base plus the person's tags as a list.
with tags as (
    select user_key, {{ sorted_string_list('tag') }} as tags, count(*) as tag_count
    from {{ source('ml', 'user_tags') }}
    group by user_key
)

select
    base.*,
    tags.tags,
    coalesce(tags.tag_count, 0) as tag_count
from {{ ref('int_user_profile_base') }} as base
left join tags on tags.user_key = base.user_key
