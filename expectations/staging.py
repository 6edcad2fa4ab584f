"""Staging layer: typed, deduplicated sources, one row per key."""

import great_expectations as gx
import great_expectations.expectations as gxe

CHANNELS = ["miniprogram", "official_account", "app", "web", "offline_store", "other"]

stg_segment__events = gx.ExpectationSuite(
    name="staging_events",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="occurred_at"),
        gxe.ExpectColumnValuesToBeInSet(
            column="event_type", value_set=["track", "page", "screen", "identify", "alias"]
        ),
        gxe.ExpectColumnValuesToBeInSet(column="channel", value_set=CHANNELS),
        gxe.ExpectColumnValuesToBeInSet(column="content_type", value_set=["article", "video", "live"], mostly=0.99),
    ],
)

stg_crm__users = gx.ExpectationSuite(
    name="staging_users",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_id"),
        gxe.ExpectColumnValuesToBeInSet(column="gender", value_set=["M", "F", "U"]),
        gxe.ExpectColumnValuesToMatchRegex(column="phone_hash", regex="^[0-9a-f]{64}$"),
    ],
)

stg_crm__orders = gx.ExpectationSuite(
    name="staging_orders",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="order_id"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["paid", "refunded", "cancelled"]),
        gxe.ExpectColumnValuesToBeBetween(column="paid_amount", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="discount_amount", min_value=0),
    ],
)
