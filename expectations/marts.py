"""Marts layer: what BI reads. These suites are blocking: a failure stops publication."""

import great_expectations as gx
import great_expectations.expectations as gxe

CHANNELS = ["miniprogram", "official_account", "app", "web", "offline_store", "other"]
STAGES = ["prospect", "new", "growing", "mature", "declining", "churned"]

fct_events = gx.ExpectationSuite(
    name="marts_fct_events",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="event_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="occurred_at"),
        gxe.ExpectColumnValuesToBeInSet(column="channel", value_set=CHANNELS),
        gxe.ExpectColumnValuesToBeBetween(column="duration_seconds", min_value=0),
    ],
)

fct_orders = gx.ExpectationSuite(
    name="marts_fct_orders",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="order_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="order_id"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["paid", "refunded", "cancelled"]),
        gxe.ExpectColumnValuesToBeBetween(column="paid_amount", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="discount_amount", min_value=0),
    ],
)

dim_users = gx.ExpectationSuite(
    name="marts_dim_users",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToNotBeNull(column="user_key"),
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F", "U"]),
        gxe.ExpectColumnValuesToBeInSet(
            column="age_band", value_set=["under_18", "18-24", "25-34", "35-44", "45-54", "55+", "unknown"]
        ),
    ],
)

identity_map = gx.ExpectationSuite(
    name="marts_identity_map",
    expectations=[
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["identifier_type", "identifier_value"]),
        gxe.ExpectColumnValuesToNotBeNull(column="user_key"),
        gxe.ExpectColumnValuesToBeInSet(
            column="identifier_type", value_set=["user_id", "anonymous_id", "openid", "unionid", "phone"]
        ),
    ],
)

user_profile = gx.ExpectationSuite(
    name="marts_user_profile",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToNotBeNull(column="user_key"),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=5)
            for c in ("r_score", "f_score", "m_score")
        ),
        gxe.ExpectColumnValuesToBeInSet(column="lifecycle_stage", value_set=STAGES),
        gxe.ExpectColumnValuesToBeInSet(column="value_tier", value_set=["high", "mid", "low"]),
        gxe.ExpectColumnValuesToBeBetween(column="p_alive", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="churn_risk", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="monetary", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="frequency", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="recency_days", min_value=0),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1)
            for c in ("share_morning", "share_daytime", "share_evening", "share_late_night",
                      "share_article", "share_video", "share_live", "coupon_use_rate")
        ),
    ],
)
