-- People and paid revenue by province and city (the person's CRM address, else their latest event location).
-- Paid orders nobody could be attributed to land under `unknown`, so revenue adds up to the paid total.
with people as (
    select
        user_key,
        coalesce(province, 'unknown') as province,
        coalesce(city, 'unknown') as city
    from {{ ref('dim_users') }}
    where {{ local_date('first_seen_at') }} <= {{ as_of_date() }}
),

paid_orders as (
    select user_key, order_id, paid_amount
    from {{ ref('int_orders_as_of') }}
    where is_paid and ordered_date <= {{ as_of_date() }}
),

people_by_location as (
    select province, city, count(*) as users
    from people
    group by province, city
),

revenue_by_location as (
    select
        coalesce(people.province, 'unknown') as province,
        coalesce(people.city, 'unknown') as city,
        count(distinct paid_orders.user_key) as buyers,
        count(*) as paid_orders,
        sum(paid_orders.paid_amount) as paid_revenue
    from paid_orders
    left join people on people.user_key = paid_orders.user_key
    group by coalesce(people.province, 'unknown'), coalesce(people.city, 'unknown')
)

select
    coalesce(people_by_location.province, revenue_by_location.province) as province,
    coalesce(people_by_location.city, revenue_by_location.city) as city,
    coalesce(people_by_location.users, 0) as users,
    coalesce(revenue_by_location.buyers, 0) as buyers,
    coalesce(revenue_by_location.paid_orders, 0) as paid_orders,
    coalesce(revenue_by_location.paid_revenue, 0) as paid_revenue
from people_by_location
full outer join revenue_by_location
    on revenue_by_location.province = people_by_location.province
    and revenue_by_location.city = people_by_location.city
