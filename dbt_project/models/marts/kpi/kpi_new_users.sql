-- New people per local day of their first sighting, split by the channel and WeChat scene of their first
-- touch.
select
    {{ local_date('first_seen_at') }} as first_seen_date,
    coalesce(first_channel, 'unknown') as first_channel,
    coalesce(first_scene, 'none') as first_scene,
    count(*) as new_users
from {{ ref('dim_users') }}
where {{ local_date('first_seen_at') }} <= {{ as_of_date() }}
group by
    {{ local_date('first_seen_at') }},
    coalesce(first_channel, 'unknown'),
    coalesce(first_scene, 'none')
