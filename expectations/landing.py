"""Landing layer: what ingestion promises about `raw.*`."""

import great_expectations as gx
import great_expectations.expectations as gxe

EVENT_TYPES = ["track", "page", "screen", "identify", "alias"]

raw_events = gx.ExpectationSuite(
    name="raw_events",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="message_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="message_id"),
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=EVENT_TYPES),
        gxe.ExpectColumnValuesToNotBeNull(column="occurred_at"),
    ],
)

raw_orders = gx.ExpectationSuite(
    name="raw_orders",
    expectations=[
        gxe.ExpectColumnValuesToNotBeNull(column="order_id"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["paid", "refunded", "cancelled"]),
        gxe.ExpectColumnValuesToBeBetween(column="paid_amount", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="discount_amount", min_value=0),
        # A phone column holds keyed hashes only: 64 lowercase hex characters.
        gxe.ExpectColumnValuesToMatchRegex(column="phone", regex="^[0-9a-f]{64}$"),
    ],
)

raw_order_items = gx.ExpectationSuite(
    name="raw_order_items",
    expectations=[
        gxe.ExpectColumnValuesToNotBeNull(column="order_id"),
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0),
    ],
)
