"""RFM scoring: quintile scores, the 11 classic segments, the Chinese 8-type model and value tiers.

Pure functions over a per-person frame ``[user_key, recency_days, frequency, monetary]``. Only buyers
(``frequency > 0``) are scored. Non-buyers keep their row with null scores, ``rfm_segment = 'Non-buyer'``
and null ``value_tier`` / ``rfm_customer_type``, so every person in ``marts.user_profile`` has a segment
that BI filters can use. :func:`rfm_rules_markdown` renders these rules for the docs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext

import numpy as np
import pandas as pd

SCORE_BINS = 5
NON_BUYER_SEGMENT = "Non-buyer"
SCORE_COLUMNS = ("r_score", "f_score", "m_score")

# The classic 11 segments, in the order the reference (and most RFM write-ups) list them.
SEGMENT_NAMES = {
    "CH": "Champions",
    "LO": "Loyal",
    "PL": "Potential Loyalists",
    "NC": "New Customers",
    "PR": "Promising",
    "NA": "Need Attention",
    "AS": "About to Sleep",
    "CL": "Cannot Lose Them",
    "AR": "At Risk",
    "HI": "Hibernating",
    "LT": "Lost",
}
SEGMENTS = tuple(SEGMENT_NAMES.values())

# Segment of every (R, F, M) cell: one 5x5 grid per R score, rows F = 5..1, columns M = 1..5.
# This is the widely published 125-cell table (Neal Analytics / Bloomreach) that the reference
# segmentation of UCI Online Retail uses; 113 of its cells occur in that data and are checked there.
_SEGMENT_GRIDS = {
    5: ("PL PL PL CH CH", "PL PL LO CH CH", "PL PL PL NA NA", "PR PR PR PR PR", "NC NC PR PR PR"),
    4: ("PL PL PL CH CH", "PL PL NA LO CH", "PL PL PL NA LO", "NC NC PL PR PR", "NC NC PR PR PR"),
    3: ("PL PL PL LO LO", "PL PL NA LO LO", "AS HI PL NA LO", "AS HI PL NA NA", "NC AS PR PR PR"),
    2: ("HI AR AR AR AR", "HI AR AR AR AR", "HI HI HI AR AR", "AS HI HI AR AR", "HI HI AS CL CL"),
    1: ("LT AR AR CL CL", "LT AR AR CL AR", "LT HI AR AR AR", "LT HI HI AR AR", "LT LT CL CL CL"),
}


def _segment_by_cell() -> dict[tuple[int, int, int], str]:
    """Expand the readable grids into a (r, f, m) -> segment lookup."""
    lookup = {}
    for r_score, rows in _SEGMENT_GRIDS.items():
        for f_score, row in zip(range(SCORE_BINS, 0, -1), rows, strict=True):
            for m_score, code in enumerate(row.split(), start=1):
                lookup[(r_score, f_score, m_score)] = SEGMENT_NAMES[code]
    return lookup


SEGMENT_BY_CELL = _segment_by_cell()


def _lookup_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Segment and cell text as arrays indexed [r, f, m] (index 0 unused), to label whole columns at once."""
    segments = np.empty((SCORE_BINS + 1,) * 3, dtype=object)
    cells = np.empty((SCORE_BINS + 1,) * 3, dtype=object)
    for (r_score, f_score, m_score), segment in SEGMENT_BY_CELL.items():
        segments[r_score, f_score, m_score] = segment
        cells[r_score, f_score, m_score] = f"{r_score},{f_score},{m_score}"
    return segments, cells


_SEGMENT_ARRAY, _CELL_ARRAY = _lookup_arrays()

# Chinese 8-type model: (R high, F high, M high) -> type. "High" R means recency at or below the mean.
CUSTOMER_TYPES = {
    (True, True, True): "重要价值客户",
    (False, True, True): "重要保持客户",
    (True, False, True): "重要发展客户",
    (False, False, True): "重要挽留客户",
    (True, True, False): "一般价值客户",
    (False, True, False): "一般保持客户",
    (True, False, False): "一般发展客户",
    (False, False, False): "一般挽留客户",
}

# Value tier from F score + M score (2..10): what the person is worth, whatever their recency.
HIGH_TIER_MIN_FM = 8
MID_TIER_MIN_FM = 5
VALUE_TIERS = ("high", "mid", "low")


def min_rank(values: np.ndarray) -> np.ndarray:
    """Rank ascending with ties taking the lowest rank (pandas method='min'), exact for Decimal too."""
    ordered = np.sort(values)
    return np.searchsorted(ordered, values, side="left") + 1


def equal_width_rank_bins(ranks: np.ndarray, n_bins: int = SCORE_BINS) -> np.ndarray:
    """Cut ranks into n equal-width bins over [min, max] in integer arithmetic, exactly as pandas.cut does.

    Bin k (1-based) holds ranks in (lo + (k-1)*span/n, lo + k*span/n], the first bin also holding lo,
    so a rank exactly on an edge goes to the lower bin (pandas.cut's right-closed bins). Computed as
    max(1, ceil(n*(rank - lo)/span)) with integers, so no float edge can misplace a rank. When all ranks
    are equal (span 0) everyone gets the middle bin (n+1)//2, which is also what pandas.cut returns.
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.size == 0:
        return ranks
    lo, hi = int(ranks.min()), int(ranks.max())
    span = hi - lo
    if span == 0:
        return np.full(ranks.shape, (n_bins + 1) // 2, dtype=np.int64)
    ceiling = -((-n_bins * (ranks - lo)) // span)
    return np.maximum(ceiling, 1)


def quintile_scores(
    values: np.ndarray, higher_is_better: bool = True, n_bins: int = SCORE_BINS
) -> np.ndarray:
    """Score 1..n by equal-width bins of the min-rank; reversed when smaller values are better (recency)."""
    bins = equal_width_rank_bins(min_rank(values), n_bins)
    return bins if higher_is_better else n_bins + 1 - bins


def segment_for_cell(r_score: int, f_score: int, m_score: int) -> str:
    """Name the classic segment of one RFM cell."""
    return SEGMENT_BY_CELL[(int(r_score), int(f_score), int(m_score))]


def value_tier_for_scores(f_scores: np.ndarray, m_scores: np.ndarray) -> np.ndarray:
    """Tier by F + M score: high >= 8 (both about top-two quintiles), mid >= 5, else low."""
    fm = np.asarray(f_scores, dtype=np.int64) + np.asarray(m_scores, dtype=np.int64)
    return np.where(fm >= HIGH_TIER_MIN_FM, "high", np.where(fm >= MID_TIER_MIN_FM, "mid", "low"))


def _exact_values(column: pd.Series, name: str) -> np.ndarray:
    """Return buyer values as int64, float64 or Decimal objects, refusing nulls that would corrupt ranks."""
    if column.isna().any():
        raise ValueError(f"{name} is null for {int(column.isna().sum())} buyer(s); buyers need a value")
    if column.dtype == object and any(isinstance(value, Decimal) for value in column):
        return np.array([Decimal(value) for value in column], dtype=object)
    numbers = pd.to_numeric(column)
    if pd.api.types.is_integer_dtype(numbers.dtype):
        return numbers.to_numpy(dtype=np.int64)
    floats = numbers.to_numpy(dtype=np.float64)
    # Whole-number floats (days read from a nullable column) become ints so mean comparisons stay exact.
    if np.isfinite(floats).all() and (floats == np.round(floats)).all() and (np.abs(floats) < 2**53).all():
        return floats.astype(np.int64)
    return floats


def exact_total(values: np.ndarray) -> int | float | Decimal:
    """The sum that at_or_above_mean compares against: exact for integers and Decimal, math.fsum for floats."""
    if values.dtype == object:
        with localcontext() as context:
            context.prec = 60
            return sum(values, Decimal(0))
    if np.issubdtype(values.dtype, np.integer):
        return sum(int(value) for value in values)
    return math.fsum(values)


def at_or_above_mean(
    values: np.ndarray, count: int | None = None, total: int | float | Decimal | None = None
) -> np.ndarray:
    """Flag values >= their mean, tested as value * n >= sum so that a value exactly at the mean counts.

    Exact for integers and Decimal (Python ints / a 60-digit Decimal context); for floats the sum is
    math.fsum (correctly rounded), which avoids the extra rounding of dividing by n. `count` and `total`
    (from exact_total) default to the values' own; pass the population's to flag a batch of it. The type of
    `total` decides the arithmetic, so a batch compares exactly as the whole population would.
    """
    if count is None or total is None:
        count, total = len(values), exact_total(values)
    if isinstance(total, Decimal):
        with localcontext() as context:
            context.prec = 60
            return np.array([Decimal(value) * count >= total for value in values], dtype=bool)
    if isinstance(total, int):
        if count and len(values) and int(np.abs(values).max()) * count < 2**62 and abs(total) < 2**62:
            return values.astype(np.int64) * count >= total
        return np.array([int(value) * count >= total for value in values], dtype=bool)
    return np.asarray(values, dtype=np.float64) * count >= total


def customer_types(
    recency: np.ndarray,
    frequency: np.ndarray,
    monetary: np.ndarray,
    population: RfmPopulation | None = None,
) -> np.ndarray:
    """Chinese 8-type label from R, F, M each against the buyers' mean (exactly at the mean is high).

    The means are those of `population` when given (scoring a batch), else of the values passed.
    """
    if population is None:
        recent = at_or_above_mean(-recency)
        frequent = at_or_above_mean(frequency)
        big_spender = at_or_above_mean(monetary)
    else:
        r, f, m = population.recency, population.frequency, population.monetary
        recent = at_or_above_mean(-recency, r.count, -r.total)
        frequent = at_or_above_mean(frequency, f.count, f.total)
        big_spender = at_or_above_mean(monetary, m.count, m.total)
    by_flags = np.empty((2, 2, 2), dtype=object)
    for (r_high, f_high, m_high), label in CUSTOMER_TYPES.items():
        by_flags[int(r_high), int(f_high), int(m_high)] = label
    return by_flags[recent.astype(int), frequent.astype(int), big_spender.astype(int)]


@dataclass(frozen=True)
class MeasureCutoffs:
    """What scoring one of R, F, M needs from all buyers, so that buyers can be scored a batch at a time.

    Bins rise with the value (min-rank, then equal-width rank bins), so each bin is a range of values:
    `upper_values[i]` is the largest buyer value in bin `bins[i]`, ascending (bins nobody fell into are
    absent). `count` and `total` (exact_total) give the mean for the 高/低 test.
    """

    upper_values: tuple
    bins: tuple[int, ...]
    count: int
    total: int | float | Decimal

    def bins_of(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value; every value must be one of the population's (a larger one has no bin)."""
        positions = np.searchsorted(np.asarray(self.upper_values), values, side="left")
        if len(values) and positions.max() >= len(self.bins):
            raise ValueError("a value above every bin of the population: were the cutoffs computed on other data?")
        return np.asarray(self.bins, dtype=np.int64)[positions]


@dataclass(frozen=True)
class RfmPopulation:
    """Cutoffs of recency, frequency and monetary over every buyer."""

    recency: MeasureCutoffs
    frequency: MeasureCutoffs
    monetary: MeasureCutoffs


def measure_cutoffs(values: np.ndarray) -> MeasureCutoffs:
    """Cutoffs of one measure from all buyers' values (as _exact_values returns them)."""
    bins = equal_width_rank_bins(min_rank(values))
    present = np.unique(bins)
    uppers = tuple(values[bins == b].max() for b in present)
    return MeasureCutoffs(uppers, tuple(int(b) for b in present), len(values), exact_total(values))


def rfm_population(customers: pd.DataFrame) -> RfmPopulation:
    """Cutoffs of R, F and M over the buyers of a whole per-person frame."""
    _check_input(customers)
    buyers = customers.loc[(pd.to_numeric(customers["frequency"]).fillna(0) > 0).to_numpy()]
    return RfmPopulation(
        *(measure_cutoffs(_exact_values(buyers[c], c)) for c in ("recency_days", "frequency", "monetary"))
    )


def _check_input(customers: pd.DataFrame) -> None:
    """Fail loudly on frames that cannot be scored rather than scoring the wrong people."""
    missing = {"user_key", "recency_days", "frequency", "monetary"} - set(customers.columns)
    if missing:
        raise ValueError(f"RFM input is missing columns: {sorted(missing)}")
    if customers["user_key"].duplicated().any():
        raise ValueError("RFM input has duplicate user_key values; expected one row per person")


def score_rfm(customers: pd.DataFrame, population: RfmPopulation | None = None) -> pd.DataFrame:
    """Add r/f/m scores, rfm_cell, rfm_segment, value_tier and rfm_customer_type to a per-person frame.

    Scores use the reference method (min-rank, equal-width rank bins, R reversed) over buyers only: over the
    buyers of `customers`, or over all buyers `population` describes when the frame is one batch of them.
    """
    _check_input(customers)
    scored = customers.copy()
    is_buyer = (pd.to_numeric(scored["frequency"]).fillna(0) > 0).to_numpy(dtype=bool)
    buyers = scored.loc[is_buyer]
    population = population or rfm_population(customers)

    recency = _exact_values(buyers["recency_days"], "recency_days")
    frequency = _exact_values(buyers["frequency"], "frequency")
    monetary = _exact_values(buyers["monetary"], "monetary")
    r_scores = SCORE_BINS + 1 - population.recency.bins_of(recency)
    f_scores = population.frequency.bins_of(frequency)
    m_scores = population.monetary.bins_of(monetary)

    for column, values in zip(SCORE_COLUMNS, (r_scores, f_scores, m_scores), strict=True):
        scored[column] = _place_scores(values, is_buyer, scored.index)
    labels = {
        "rfm_cell": (_CELL_ARRAY[r_scores, f_scores, m_scores], None),
        "rfm_segment": (_SEGMENT_ARRAY[r_scores, f_scores, m_scores], NON_BUYER_SEGMENT),
        "value_tier": (value_tier_for_scores(f_scores, m_scores), None),
        "rfm_customer_type": (customer_types(recency, frequency, monetary, population), None),
    }
    for column, (buyer_values, non_buyer_value) in labels.items():
        scored[column] = _place_labels(buyer_values, is_buyer, non_buyer_value, scored.index)
    return scored


def _place_scores(buyer_scores: np.ndarray, is_buyer: np.ndarray, index: pd.Index) -> pd.Series:
    """Spread buyer scores back over all rows as nullable integers, null for non-buyers."""
    filled = np.zeros(len(is_buyer), dtype=np.int64)
    filled[is_buyer] = buyer_scores
    return pd.Series(pd.array(filled, dtype="Int64"), index=index).mask(~is_buyer)


def _place_labels(
    buyer_values: np.ndarray, is_buyer: np.ndarray, non_buyer_value: str | None, index: pd.Index
) -> pd.Series:
    """Spread buyer labels back over all rows as a string column, non-buyers getting one fixed value."""
    filled = np.full(len(is_buyer), non_buyer_value, dtype=object)
    filled[is_buyer] = np.asarray(buyer_values, dtype=object)
    return pd.Series(filled, dtype="str", index=index)


def segment_totals(scored: pd.DataFrame) -> pd.DataFrame:
    """Buyers and revenue per segment (every segment, zeros included), unrounded so batches can be added up."""
    buyers = scored[scored["rfm_segment"].isin(SEGMENTS)]
    grouped = pd.DataFrame({"segment": buyers["rfm_segment"].astype(str), "revenue": buyers["monetary"].map(float)})
    totals = grouped.groupby("segment").agg(customers=("revenue", "size"), revenue=("revenue", "sum"))
    totals = totals.reindex(list(SEGMENTS), fill_value=0).rename_axis("segment")
    return totals.astype({"customers": "int64", "revenue": "float64"})


def segment_summary(scored: pd.DataFrame) -> pd.DataFrame:
    """Customers and revenue per segment (buyers only), with percentages rounded to 2 places like reports."""
    return summarise_segments(segment_totals(scored))


def summarise_segments(totals: pd.DataFrame) -> pd.DataFrame:
    """segment_summary from segment_totals, which may be summed over batches of people."""
    summary = totals.reset_index()
    summary["revenue"] = summary["revenue"].round(2)
    summary["customer_pct"] = (100 * summary["customers"] / max(int(summary["customers"].sum()), 1)).round(2)
    total_revenue = summary["revenue"].sum()
    summary["revenue_pct"] = (100 * summary["revenue"] / total_revenue).round(2) if total_revenue else 0.0
    return summary[["segment", "customers", "customer_pct", "revenue", "revenue_pct"]]


def rfm_rules_markdown() -> str:
    """Render the scoring rules from the constants above, so the docs cannot drift from the code."""
    codes = {name: code for code, name in SEGMENT_NAMES.items()}
    lines = [
        "## RFM scoring rules",
        "",
        "Input per person: `recency_days` (whole calendar days from the last paid order to the as-of date), "
        "`frequency` (paid orders) and `monetary` (their summed `paid_amount`). Only buyers "
        "(`frequency > 0`) are scored; non-buyers get null scores, null `value_tier` and "
        f"`rfm_customer_type`, and `rfm_segment = '{NON_BUYER_SEGMENT}'`.",
        "",
        "### Scores 1-5",
        "1. Rank each of R, F, M over all buyers, ascending; ties take the lowest rank "
        "(pandas `method='min'`).",
        f"2. Cut the ranks into {SCORE_BINS} equal-width bins over [lowest rank, highest rank] "
        "(as `pandas.cut`): "
        "bin k holds ranks in (lo + (k-1)·span/5, lo + k·span/5], the first bin also holds lo; a rank "
        "exactly on an edge goes to the lower bin. Computed in integers as max(1, ceil(5·(rank - lo)/span)).",
        "3. F and M score = bin; R score = 6 - bin (fewer days since the last order is better).",
        "4. If every buyer ties (or there is one buyer) all get the middle score 3.",
        "",
        "This reproduces the published reference segmentation of UCI Online Retail (4,338 customers) "
        "exactly.",
        "",
        "### Segments (classic 11)",
        "One grid per R score; rows are F score 5 to 1, columns M score 1 to 5. Codes: "
        + ", ".join(f"{code} = {name}" for code, name in SEGMENT_NAMES.items())
        + ".",
        "",
    ]
    for r_score, rows in _SEGMENT_GRIDS.items():
        lines += [f"**R = {r_score}**", "", "| F \\ M | 1 | 2 | 3 | 4 | 5 |", "|---|---|---|---|---|---|"]
        for f_score, row in zip(range(SCORE_BINS, 0, -1), rows, strict=True):
            lines.append(f"| {f_score} | " + " | ".join(row.split()) + " |")
        lines.append("")
    cell_counts = pd.Series(list(SEGMENT_BY_CELL.values())).value_counts()
    lines.append(
        "Cells per segment: "
        + ", ".join(f"{codes[name]} {int(cell_counts.get(name, 0))}" for name in SEGMENTS)
        + "."
    )
    lines += [
        "",
        "### Value tier",
        f"From F score + M score: `high` if >= {HIGH_TIER_MIN_FM}, `mid` if >= {MID_TIER_MIN_FM}, else `low` "
        "(recency is left out on purpose: a lapsed big spender is still high value, and worth winning back).",
        "",
        "### Chinese 8-type model (`rfm_customer_type`)",
        "R, F and M are each compared with their mean over buyers. F or M is 高 (high) when at or above its "
        "mean; R is 高 when `recency_days` is at or below its mean (more recent). A value exactly at the "
        "mean counts as 高; the test is value·n vs the sum, exact for integer and Decimal input.",
        "",
        "| R | F | M | type |",
        "|---|---|---|---|",
    ]
    for (r_high, f_high, m_high), label in CUSTOMER_TYPES.items():
        marks = ["高" if flag else "低" for flag in (r_high, f_high, m_high)]
        lines.append(f"| {marks[0]} | {marks[1]} | {marks[2]} | {label} |")
    return "\n".join(lines) + "\n"
