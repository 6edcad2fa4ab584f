"""ML layer: scores and predictions stay within their definitions."""

import great_expectations as gx
import great_expectations.expectations as gxe

STAGES = ["prospect", "new", "growing", "mature", "declining", "churned"]

user_lifecycle = gx.ExpectationSuite(
    name="ml_user_lifecycle",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToNotBeNull(column="lifecycle_stage"),
        gxe.ExpectColumnValuesToBeInSet(column="lifecycle_stage", value_set=STAGES),
    ],
)

user_rfm = gx.ExpectationSuite(
    name="ml_user_rfm",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1, max_value=5)
            for c in ("r_score", "f_score", "m_score")
        ),
        gxe.ExpectColumnValuesToBeInSet(column="value_tier", value_set=["high", "mid", "low"]),
    ],
)

user_clv = gx.ExpectationSuite(
    name="ml_user_clv",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToBeBetween(column="p_alive", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="churn_risk", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="expected_value", min_value=0),
        gxe.ExpectColumnValuesToBeInSet(column="churn_risk_band", value_set=["low", "medium", "high"]),
    ],
)

user_clusters = gx.ExpectationSuite(
    name="ml_user_clusters",
    expectations=[
        gxe.ExpectColumnValuesToBeUnique(column="user_key"),
        gxe.ExpectColumnValuesToNotBeNull(column="cluster_id"),
    ],
)
