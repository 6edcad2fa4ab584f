-- Everything known about a person except tags: the relation tag rules are written against.
-- People who withdrew profiling consent keep only their key, demographics and consent flags.
with people as (
    select * from {{ ref('dim_users') }}
),

consents as (
    select * from {{ ref('int_user_consents') }}
),

features as (
    select * from {{ ref('user_features') }}
)

select
    people.user_key,
    people.crm_user_id,
    people.gender,
    people.age_band,
    people.province,
    people.city,
    people.first_seen_at,
    people.first_channel,
    people.registered_at,
    people.member_level,
    people.is_registered,
    consents.has_profiling_consent,
    consents.has_personalization_consent,
    consents.has_marketing_consent,
    {%- set feature_columns = [
        'recency_days', 'frequency', 'monetary', 'avg_order_value', 'discount_share', 'coupon_use_rate',
        'median_order_interval_days', 'mean_order_interval_days', 'first_paid_at', 'last_paid_at',
        'days_since_first_paid', 'orders_placed', 'orders_refunded', 'orders_cancelled', 'offline_orders',
        'avg_item_price', 'full_price_item_share', 'days_since_first_seen', 'last_activity_at',
        'days_since_last_activity', 'events', 'active_days', 'active_days_7', 'active_days_30', 'active_days_90',
        'sessions', 'avg_session_seconds', 'avg_session_dwell_seconds', 'avg_dwell_seconds',
        'share_morning', 'share_daytime', 'share_evening', 'share_late_night', 'content_views',
        'share_article', 'share_video', 'share_live', 'video_seconds', 'favourite_category', 'favourite_brand',
        'product_views', 'cart_adds', 'shares_sent', 'visitors_brought', 'group_messages', 'consultations',
        'last_consultation_at', 'coupons_received', 'coupons_applied', 'last_channel', 'first_scene'
    ] %}
    {%- for column in feature_columns %}
    case when consents.has_profiling_consent then features.{{ column }} end as {{ column }},
    {%- endfor %}
    case when consents.has_profiling_consent and features.last_consultation_at is not null
        then {{ dbt.datediff(local_date('features.last_consultation_at'), as_of_date(), 'day') }}
    end as days_since_last_consultation,
    rfm.r_score,
    rfm.f_score,
    rfm.m_score,
    rfm.rfm_segment,
    rfm.rfm_customer_type,
    rfm.value_tier,
    lifecycle.lifecycle_stage,
    {{ dbt.safe_cast('clusters.cluster_id', api.Column.translate_type('string')) }} as cluster_id,
    {{ dbt.concat(['personas.name_zh', "' · '", 'personas.name_en']) }} as persona,
    clv.p_alive,
    clv.churn_risk,
    clv.churn_risk_band,
    clv.expected_purchases,
    clv.expected_value
from people
inner join consents on consents.user_key = people.user_key
left join features on features.user_key = people.user_key
left join {{ source('ml', 'user_rfm') }} as rfm
    on rfm.user_key = people.user_key and consents.has_profiling_consent
left join {{ source('ml', 'user_lifecycle') }} as lifecycle
    on lifecycle.user_key = people.user_key and consents.has_profiling_consent
left join {{ source('ml', 'user_clusters') }} as clusters
    on clusters.user_key = people.user_key and consents.has_profiling_consent
left join {{ source('ml', 'personas') }} as personas on personas.cluster_id = clusters.cluster_id
left join {{ source('ml', 'user_clv') }} as clv
    on clv.user_key = people.user_key and consents.has_profiling_consent
where features.user_key is not null
