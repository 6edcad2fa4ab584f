"""RFM scoring: hand-made frames with exact scores, and the published UCI Online Retail reference."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets import rfm

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
REFERENCE = DATASETS / "online_retail" / "reference_rfm"
REFERENCE_AS_OF = pd.Timestamp("2011-12-10")


def _customers(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_key", "recency_days", "frequency", "monetary"])


# --- ranks and bins -------------------------------------------------------------------------------


def test_min_rank_gives_ties_the_lowest_rank():
    assert rfm.min_rank(np.array([30, 10, 20, 10, 40])).tolist() == [4, 1, 3, 1, 5]


def test_min_rank_is_exact_for_decimal():
    values = np.array([Decimal("2.10"), Decimal("1.00"), Decimal("2.1"), Decimal("0.50")], dtype=object)
    assert rfm.min_rank(values).tolist() == [3, 2, 3, 1]


def test_rank_exactly_on_a_bin_edge_goes_to_the_lower_bin():
    # ranks 1..6: span 5, edges at 2, 3, 4, 5 -> rank 2 is on the first edge and stays in bin 1
    assert rfm.equal_width_rank_bins(np.array([1, 2, 3, 4, 5, 6])).tolist() == [1, 1, 2, 3, 4, 5]


def test_bins_follow_min_ranks_with_ties():
    # values 10,20,20,30,40,50 -> ranks 1,2,2,4,5,6
    scores = rfm.quintile_scores(np.array([10, 20, 20, 30, 40, 50]))
    assert scores.tolist() == [1, 1, 1, 3, 4, 5]


def test_recency_scores_are_reversed():
    scores = rfm.quintile_scores(np.array([1, 5, 5, 9, 40, 100]), higher_is_better=False)
    assert scores.tolist() == [5, 5, 5, 3, 2, 1]


def test_everyone_tied_or_alone_gets_the_middle_score():
    assert rfm.quintile_scores(np.array([7, 7, 7])).tolist() == [3, 3, 3]
    assert rfm.quintile_scores(np.array([7]), higher_is_better=False).tolist() == [3]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=120)
    | st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=120)
)
def test_integer_bins_equal_pandas_cut_on_min_ranks(values):
    series = pd.Series(values)
    ranks = series.rank(method="min").astype(int)
    expected = pd.cut(ranks, 5, labels=[1, 2, 3, 4, 5]).astype(int).to_numpy()
    assert rfm.min_rank(series.to_numpy()).tolist() == ranks.tolist()
    assert rfm.quintile_scores(series.to_numpy()).tolist() == expected.tolist()


# --- segments and types ---------------------------------------------------------------------------


def test_every_cell_has_a_segment_and_published_cell_counts():
    assert len(rfm.SEGMENT_BY_CELL) == 125
    counts = pd.Series(list(rfm.SEGMENT_BY_CELL.values())).value_counts().to_dict()
    assert counts == {
        "Champions": 7,
        "Loyal": 8,
        "Potential Loyalists": 24,
        "New Customers": 7,
        "Promising": 16,
        "Need Attention": 8,
        "About to Sleep": 5,
        "Cannot Lose Them": 8,
        "At Risk": 22,
        "Hibernating": 14,
        "Lost": 6,
    }


@pytest.mark.parametrize(
    ("cell", "segment"),
    [
        ((5, 5, 5), "Champions"),
        ((4, 4, 4), "Loyal"),
        ((5, 4, 3), "Loyal"),
        ((5, 5, 3), "Potential Loyalists"),
        ((3, 1, 1), "New Customers"),
        ((5, 1, 5), "Promising"),
        ((4, 4, 3), "Need Attention"),
        ((2, 1, 3), "About to Sleep"),
        ((1, 1, 5), "Cannot Lose Them"),
        ((2, 5, 5), "At Risk"),
        ((2, 5, 1), "Hibernating"),
        ((1, 5, 1), "Lost"),
    ],
)
def test_named_cells(cell, segment):
    assert rfm.segment_for_cell(*cell) == segment


def test_eight_types_cover_every_combination():
    recency = np.array([0, 0, 0, 0, 20, 20, 20, 20])  # mean 10
    frequency = np.array([5, 5, 1, 1, 5, 5, 1, 1])  # mean 3
    monetary = np.array([9, 1, 9, 1, 9, 1, 9, 1])  # mean 5
    assert rfm.customer_types(recency, frequency, monetary).tolist() == [
        "重要价值客户",
        "一般价值客户",
        "重要发展客户",
        "一般发展客户",
        "重要保持客户",
        "一般保持客户",
        "重要挽留客户",
        "一般挽留客户",
    ]


def test_value_exactly_at_the_mean_counts_as_high():
    assert rfm.at_or_above_mean(np.array([1, 2, 3])).tolist() == [False, True, True]
    # A float mean of 0.1, 0.2, 0.3 is 0.20000000000000004; 0.2 must still count as at the mean.
    assert rfm.at_or_above_mean(np.array([0.1, 0.2, 0.3])).tolist() == [False, True, True]
    decimals = np.array([Decimal("0.10"), Decimal("0.20"), Decimal("0.30")], dtype=object)
    assert rfm.at_or_above_mean(decimals).tolist() == [False, True, True]
    # recency 20 is exactly the mean of 10, 20, 30 -> counts as recent (R high)
    types = rfm.customer_types(np.array([10, 20, 30]), np.array([1, 1, 1]), np.array([1, 1, 1]))
    assert types.tolist() == ["重要价值客户", "重要价值客户", "重要保持客户"]


def test_value_tier_by_f_plus_m():
    tiers = rfm.value_tier_for_scores(np.array([4, 5, 3, 2, 1]), np.array([4, 2, 2, 2, 5]))
    # F + M = 8, 7, 5, 4, 6
    assert tiers.tolist() == ["high", "mid", "mid", "low", "mid"]


# --- score_rfm on hand-made frames ----------------------------------------------------------------


def test_score_rfm_scores_buyers_only_and_labels_non_buyers():
    customers = _customers(
        [
            ("a", 1, 6, Decimal("600.00")),
            ("b", 10, 3, Decimal("300.00")),
            ("c", 10, 3, Decimal("300.00")),
            ("d", 50, 2, Decimal("90.50")),
            ("e", 90, 1, Decimal("10.00")),
            ("f", 200, 1, Decimal("5.00")),
            ("x", None, 0, None),
        ]
    )
    scored = rfm.score_rfm(customers).set_index("user_key")
    # ranks over the 6 buyers: R (days asc) 1,2,2,4,5,6; F 6,4,4,3,1,1; M 6,4,4,3,2,1; span 5
    assert scored.loc[["a", "b", "c", "d", "e", "f"], "r_score"].tolist() == [5, 5, 5, 3, 2, 1]
    assert scored.loc[["a", "b", "c", "d", "e", "f"], "f_score"].tolist() == [5, 3, 3, 2, 1, 1]
    assert scored.loc[["a", "b", "c", "d", "e", "f"], "m_score"].tolist() == [5, 3, 3, 2, 1, 1]
    assert scored.loc["a", "rfm_cell"] == "5,5,5"
    assert scored.loc[["a", "b", "d", "e", "f"], "rfm_segment"].tolist() == [
        "Champions",
        "Potential Loyalists",
        "Hibernating",
        "Hibernating",
        "Lost",
    ]
    assert scored.loc[["a", "b", "d", "e"], "value_tier"].tolist() == ["high", "mid", "low", "low"]
    # means over buyers: recency 60.17, frequency 2.67, monetary 217.58
    assert scored.loc[["a", "b", "d", "f"], "rfm_customer_type"].tolist() == [
        "重要价值客户",
        "重要价值客户",
        "一般发展客户",
        "一般挽留客户",
    ]
    non_buyer = scored.loc["x"]
    assert non_buyer[["r_score", "f_score", "m_score"]].isna().all()
    assert non_buyer["rfm_segment"] == rfm.NON_BUYER_SEGMENT
    assert pd.isna(non_buyer["value_tier"]) and pd.isna(non_buyer["rfm_customer_type"])


def test_non_buyers_do_not_move_buyer_scores():
    buyers = _customers([(f"u{i}", i * 3, 1 + i % 4, float(10 * i + 1)) for i in range(12)])
    with_prospects = pd.concat([buyers, _customers([("p1", None, 0, None), ("p2", None, 0, 0.0)])])
    alone = rfm.score_rfm(buyers)
    mixed = rfm.score_rfm(with_prospects).iloc[: len(buyers)]
    for column in [*rfm.SCORE_COLUMNS, "rfm_segment", "rfm_customer_type", "value_tier"]:
        assert mixed[column].tolist() == alone[column].tolist()


def test_float_and_decimal_monetary_score_alike():
    amounts = ["19.90", "5.00", "19.90", "250.10", "0.99", "88.00", "88.00", "1000.00"]
    as_decimal = _customers([(str(i), i, 1 + i % 3, Decimal(a)) for i, a in enumerate(amounts)])
    as_float = as_decimal.assign(monetary=as_decimal["monetary"].map(float))
    assert rfm.score_rfm(as_decimal)["m_score"].tolist() == rfm.score_rfm(as_float)["m_score"].tolist()


@pytest.mark.parametrize("missing", [None, np.nan])
def test_a_frame_without_buyers_scores_nobody(missing):
    scored = rfm.score_rfm(_customers([("a", missing, 0, missing), ("b", missing, 0, missing)]))
    assert scored[list(rfm.SCORE_COLUMNS)].isna().all().all()
    assert scored["rfm_segment"].tolist() == [rfm.NON_BUYER_SEGMENT] * 2
    assert rfm.segment_summary(scored)["customers"].sum() == 0


def test_invalid_input_is_refused():
    with pytest.raises(ValueError, match="duplicate"):
        rfm.score_rfm(_customers([("a", 1, 1, 1.0), ("a", 2, 1, 2.0)]))
    with pytest.raises(ValueError, match="monetary"):
        rfm.score_rfm(_customers([("a", 1, 1, None), ("b", 2, 1, 2.0)]))
    with pytest.raises(ValueError, match="missing columns"):
        rfm.score_rfm(pd.DataFrame({"user_key": ["a"], "frequency": [1]}))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=400),
            st.integers(min_value=0, max_value=30),
            st.integers(min_value=0, max_value=100_000),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_invariants_on_random_people(rows):
    customers = _customers(
        [
            (f"u{i}", days if orders else None, orders, Decimal(cents) / 100 if orders else None)
            for i, (days, orders, cents) in enumerate(rows)
        ]
    )
    scored = rfm.score_rfm(customers)
    buyers = scored[scored["frequency"] > 0]
    summary = rfm.segment_summary(scored)
    assert summary["customers"].sum() == len(buyers)
    assert (scored["rfm_segment"] == rfm.NON_BUYER_SEGMENT).sum() == len(scored) - len(buyers)
    assert buyers[list(rfm.SCORE_COLUMNS)].isin([1, 2, 3, 4, 5]).all().all()
    # more money never scores lower; fewer days since the last order never scores lower
    by_money = buyers.sort_values("monetary")
    assert by_money["m_score"].is_monotonic_increasing
    by_recency = buyers.sort_values("recency_days")
    assert by_recency["r_score"].is_monotonic_decreasing


# --- docs -----------------------------------------------------------------------------------------


def test_markdown_rules_match_the_code():
    markdown = rfm.rfm_rules_markdown()
    grids = re.findall(r"\*\*R = (\d)\*\*\n\n\| F \\ M.*\n\|---.*\n((?:\|.*\n){5})", markdown)
    assert len(grids) == 5
    names = rfm.SEGMENT_NAMES
    for r_score, rows in grids:
        for row in rows.strip().splitlines():
            f_score, *codes = [cell.strip() for cell in row.strip("|").split("|")]
            for m_score, code in enumerate(codes, start=1):
                assert rfm.segment_for_cell(int(r_score), int(f_score), m_score) == names[code]
    for label in [*rfm.SEGMENTS, *rfm.CUSTOMER_TYPES.values(), rfm.NON_BUYER_SEGMENT]:
        assert label in markdown
    assert f">= {rfm.HIGH_TIER_MIN_FM}" in markdown and f">= {rfm.MID_TIER_MIN_FM}" in markdown


# --- published reference: UCI Online Retail -------------------------------------------------------


@pytest.fixture(scope="module")
def reference_customers() -> pd.DataFrame:
    """Recency, frequency and monetary per customer, computed from the reference's own invoice file."""
    invoices = pd.read_csv(
        REFERENCE / "online_retail.csv", dtype={"InvoiceNo": "str", "CustomerID": "str"}
    ).assign(InvoiceDate=lambda frame: pd.to_datetime(frame["InvoiceDate"]))
    per_customer = invoices.groupby("CustomerID")
    return (
        pd.DataFrame(
            {
                "recency_days": (REFERENCE_AS_OF - per_customer["InvoiceDate"].max()).dt.days,
                "frequency": per_customer["InvoiceNo"].nunique(),
                "monetary": per_customer["TotalPrice"].sum(),
            }
        )
        .rename_axis("user_key")
        .reset_index()
    )


@pytest.fixture(scope="module")
def reference_segments() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "rfm_segments.csv", dtype={"CustomerID": "str"}).set_index("CustomerID")


def test_reference_rfm_values_are_reproduced(reference_customers):
    reference = pd.read_csv(REFERENCE / "rfm_scores_5.csv", dtype={"CustomerID": "str"}).set_index(
        "CustomerID"
    )
    mine = reference_customers.set_index("user_key").loc[reference.index]
    assert len(mine) == 4338 and len(reference_customers) == 4338
    assert (mine["recency_days"] == reference["Recency"]).all()
    assert (mine["frequency"] == reference["Frequency"]).all()
    assert np.abs(mine["monetary"] - reference["Monetary"]).max() < 1e-6


@pytest.mark.parametrize("money", ["float", "decimal_cents"])
def test_reference_scores_and_segments_are_reproduced(reference_customers, reference_segments, money):
    customers = reference_customers
    if money == "decimal_cents":
        customers = customers.assign(monetary=customers["monetary"].map(lambda x: Decimal(f"{x:.2f}")))
    scored = rfm.score_rfm(customers).set_index("user_key").loc[reference_segments.index]
    assert (scored["r_score"].to_numpy() == reference_segments["RScore"].to_numpy()).all()
    assert (scored["f_score"].to_numpy() == reference_segments["FScore"].to_numpy()).all()
    assert (scored["m_score"].to_numpy() == reference_segments["MScore"].to_numpy()).all()
    assert (scored["rfm_cell"].to_numpy() == reference_segments["RFMCell"].to_numpy()).all()
    assert (scored["rfm_segment"].to_numpy() == reference_segments["Segment"].to_numpy()).all()


def test_reference_segment_sizes_and_revenue(reference_customers):
    summary = rfm.segment_summary(rfm.score_rfm(reference_customers)).set_index("segment")
    published = pd.read_csv(REFERENCE / "segment_data.csv").set_index("Segment")
    assert list(summary.index) == list(published.index)
    assert summary["customers"].tolist() == published["CustomerCount"].tolist()
    assert summary["customers"].sum() == 4338
    assert summary["customer_pct"].tolist() == published["CustomerPercentage"].tolist()
    assert np.abs(summary["revenue"] - published["Revenue"]).max() < 0.006
    assert summary["revenue_pct"].tolist() == published["RevenuePercentage"].tolist()
    assert summary.loc["Champions", "customers"] == 798
