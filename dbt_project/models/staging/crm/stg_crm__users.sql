with source as (
    select
        *,
        row_number() over (
            partition by user_id order by updated_at desc, file_seq desc, line_number desc
        ) as snapshot_rank
    from {{ source('raw', 'users') }}
),

renamed as (
    select
        -- ids
        user_id,
        phone as phone_hash,
        unionid,
        -- strings
        case
            when gender in ('M', '男') then 'M'
            when gender in ('F', '女') then 'F'
            else 'U'
        end as gender,
        province,
        city,
        member_level,
        -- dates and timestamps
        birth_date,
        registered_at,
        updated_at
    from source
    where snapshot_rank = 1
)

select * from renamed
