"""Lifecycle stages (prospect, new, growing, mature, declining, churned), their history and transitions.

Pure functions over a per-person frame of whole-calendar-day counts up to the as-of date. A day count is
"within N days" when it is < N: with N = 30, day counts 0..29 cover the 30 calendar days ending on as-of.

Precedence (the first rule that matches wins, so every person gets exactly one stage):

1. churned   - no activity at all for ``churn_days``: days since last activity >= churn_days (buyer or not)
2. prospect  - seen, never paid
3. new       - first paid order within ``new_days``: days since first paid < new_days
4. declining - days since last paid > max(declining_min_days, declining_interval_multiple x median
               order interval) (the lapse threshold; a null median uses declining_min_days alone),
               with activity within churn_days (guaranteed by rule 1)
5. mature    - paid orders >= mature_min_orders, not lapsed
6. growing   - 2 .. mature_min_orders - 1 paid orders, not lapsed
7. new       - one paid order, past the new window but not lapsed: still in the first purchase cycle,
               not yet a repeat buyer and not yet declining
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

STAGES = ("prospect", "new", "growing", "mature", "declining", "churned")
NO_STAGE = "none"
FEATURE_COLUMNS = (
    "user_key",
    "days_since_first_seen",
    "days_since_last_activity",
    "days_since_first_paid",
    "days_since_last_paid",
    "paid_orders",
    "median_order_interval_days",
)


@dataclass(frozen=True)
class LifecycleConfig:
    """Thresholds for the lifecycle rules, in whole calendar days or paid orders."""

    new_days: int = 30
    """A buyer stays `new` while their first paid order is fewer than this many days old."""
    mature_min_orders: int = 4
    """Paid orders from which a recently active buyer is `mature`; 2 up to this minus 1 is `growing`."""
    declining_min_days: int = 60
    """Smallest lapse threshold: days since the last paid order beyond which a buyer is `declining`."""
    declining_interval_multiple: float = 3.0
    """Lapse threshold grows to this multiple of the buyer's own median order interval when larger."""
    churn_days: int = 180
    """Anyone with no activity at all for this many days is `churned`."""

    def __post_init__(self) -> None:
        if self.new_days < 1 or self.declining_min_days < 1 or self.churn_days < 1:
            raise ValueError("new_days, declining_min_days and churn_days must be at least 1")
        if self.mature_min_orders < 2:
            raise ValueError("mature_min_orders must be at least 2 (one order is never mature)")
        if self.declining_interval_multiple <= 0:
            raise ValueError("declining_interval_multiple must be positive")


def _day_counts(features: pd.DataFrame, column: str) -> np.ndarray:
    """Read a day-count column as float with NaN for missing, whatever nullable dtype it arrived in."""
    return pd.to_numeric(features[column]).to_numpy(dtype=np.float64, na_value=np.nan)


def _check_features(features: pd.DataFrame) -> None:
    """Refuse frames the rules cannot classify rather than guessing a stage."""
    missing = set(FEATURE_COLUMNS) - set(features.columns)
    if missing:
        raise ValueError(f"lifecycle features are missing columns: {sorted(missing)}")
    if features["user_key"].duplicated().any():
        raise ValueError("lifecycle features have duplicate user_key values; expected one row per person")


def lapse_threshold_days(median_interval_days: np.ndarray, config: LifecycleConfig) -> np.ndarray:
    """Days since the last paid order a buyer may go before declining: their own rhythm, floored."""
    scaled = config.declining_interval_multiple * np.asarray(median_interval_days, dtype=np.float64)
    return np.where(
        np.isnan(scaled), config.declining_min_days, np.maximum(config.declining_min_days, scaled)
    )


def classify_lifecycle(features: pd.DataFrame, config: LifecycleConfig | None = None) -> pd.DataFrame:
    """Give every person exactly one lifecycle stage and a short reason (precedence: see the module doc)."""
    config = config or LifecycleConfig()
    _check_features(features)
    paid_orders = _day_counts(features, "paid_orders")
    paid_orders = np.where(np.isnan(paid_orders), 0, paid_orders).astype(np.int64)
    since_first_seen = _day_counts(features, "days_since_first_seen")
    since_activity = _day_counts(features, "days_since_last_activity")
    # A person with no recorded activity was at least active when first seen.
    since_activity = np.where(np.isnan(since_activity), since_first_seen, since_activity)
    since_first_paid = _day_counts(features, "days_since_first_paid")
    since_last_paid = _day_counts(features, "days_since_last_paid")
    median_interval = _day_counts(features, "median_order_interval_days")

    if np.isnan(since_activity).any():
        raise ValueError("some people have neither days_since_last_activity nor days_since_first_seen")
    is_buyer = paid_orders > 0
    if (is_buyer & (np.isnan(since_first_paid) | np.isnan(since_last_paid))).any():
        raise ValueError("some buyers (paid_orders > 0) lack days_since_first_paid or days_since_last_paid")

    threshold = lapse_threshold_days(median_interval, config)
    churned = since_activity >= config.churn_days
    prospect = ~is_buyer
    new_window = since_first_paid < config.new_days
    lapsed = since_last_paid > threshold
    mature = paid_orders >= config.mature_min_orders
    growing = paid_orders >= 2

    conditions = [churned, prospect, new_window, lapsed, mature, growing]
    stages = np.select(conditions, ["churned", "prospect", "new", "declining", "mature", "growing"], "new")
    reasons = _reasons(
        np.select(conditions, list(range(len(conditions))), len(conditions)),
        since_activity,
        since_first_paid,
        since_last_paid,
        paid_orders,
        median_interval,
        threshold,
        config,
    )
    return pd.DataFrame(
        {
            "user_key": features["user_key"].to_numpy(),
            "lifecycle_stage": pd.array(stages, dtype="str"),
            "reason": pd.array(reasons, dtype="str"),
        }
    )


def _day_text(values: np.ndarray) -> pd.Series:
    """Format day counts and thresholds as text without a spurious '.0', a whole column at a time."""
    return pd.Series(values, dtype="float64").map("{:g}".format).astype("str")


def _reasons(
    rule: np.ndarray,
    since_activity: np.ndarray,
    since_first_paid: np.ndarray,
    since_last_paid: np.ndarray,
    paid_orders: np.ndarray,
    median_interval: np.ndarray,
    threshold: np.ndarray,
    config: LifecycleConfig,
) -> np.ndarray:
    """Say in one line which rule placed each person, with their numbers and the threshold used."""
    multiple = f"{config.declining_interval_multiple:g}"

    def lapse(mask: np.ndarray) -> pd.Series:
        plain = "lapse after " + _day_text(threshold[mask]) + " days"
        own_rhythm = ~np.isnan(median_interval[mask]) & (threshold[mask] != config.declining_min_days)
        scaled = plain + f" = {multiple} x median interval " + _day_text(median_interval[mask])
        return plain.where(~own_rhythm, scaled)

    def orders(mask: np.ndarray) -> pd.Series:
        return pd.Series(paid_orders[mask]).astype("str")

    explain = [
        lambda m: (
            "no activity for " + _day_text(since_activity[m]) + f" days (churned from {config.churn_days})"
        ),
        lambda m: "seen, never paid; last active " + _day_text(since_activity[m]) + " days ago",
        lambda m: (
            "first paid " + _day_text(since_first_paid[m]) + f" days ago (new for {config.new_days} days)"
        ),
        lambda m: "last paid " + _day_text(since_last_paid[m]) + " days ago; " + lapse(m),
        lambda m: (
            orders(m)
            + f" paid orders (mature from {config.mature_min_orders}), last "
            + _day_text(since_last_paid[m])
            + " days ago"
        ),
        lambda m: (
            orders(m)
            + f" paid orders, building up to {config.mature_min_orders}; last "
            + _day_text(since_last_paid[m])
            + " days ago"
        ),
        lambda m: (
            "one paid order " + _day_text(since_first_paid[m]) + " days ago, no repeat yet; " + lapse(m)
        ),
    ]
    reasons = np.empty(len(rule), dtype=object)
    for rule_index, describe in enumerate(explain):
        mask = rule == rule_index
        if mask.any():
            reasons[mask] = describe(mask).to_numpy(dtype=object)
    return reasons


def _as_dates(values: pd.Series) -> pd.Series:
    """Normalise dates given as date, datetime, Timestamp or ISO text to datetime.date objects."""
    return pd.to_datetime(values, format="mixed").dt.date.astype(object)


def append_history(
    previous_history: pd.DataFrame | None, current: pd.DataFrame, as_of_date: dt.date | str
) -> pd.DataFrame:
    """Add today's stages to the history, replacing any rows already there for the same as-of date."""
    as_of = pd.Timestamp(as_of_date).date()
    if current["user_key"].duplicated().any():
        raise ValueError("current stages have duplicate user_key values")
    snapshot = pd.DataFrame(
        {
            "user_key": current["user_key"].to_numpy(),
            "as_of_date": pd.Series([as_of] * len(current), dtype=object),
            "lifecycle_stage": current["lifecycle_stage"].to_numpy(),
        }
    )
    if previous_history is None or previous_history.empty:
        history = snapshot
    else:
        kept = previous_history[["user_key", "as_of_date", "lifecycle_stage"]].copy()
        kept["as_of_date"] = _as_dates(kept["as_of_date"])
        history = pd.concat([kept[kept["as_of_date"] != as_of], snapshot], ignore_index=True)
    history = history.astype({"user_key": "str", "lifecycle_stage": "str"})
    return history.sort_values(["as_of_date", "user_key"], ignore_index=True)


def _stage_order(stage: str) -> int:
    """Sort 'none' first, then stages in lifecycle order, then anything unexpected."""
    order = (NO_STAGE, *STAGES)
    return order.index(stage) if stage in order else len(order)


def stage_transitions(
    history: pd.DataFrame, from_date: dt.date | str, to_date: dt.date | str
) -> pd.DataFrame:
    """Count people per (from_stage, to_stage) between two as-of dates; absent on one side counts as 'none'.

    People new by to_date come from 'none'; people gone by to_date (e.g. erased) go to 'none'.
    """
    dates = _as_dates(history["as_of_date"])
    start, end = pd.Timestamp(from_date).date(), pd.Timestamp(to_date).date()
    if not (dates == end).any():
        raise ValueError(f"history has no rows for to_date {end}")
    before = history.loc[dates == start, ["user_key", "lifecycle_stage"]]
    after = history.loc[dates == end, ["user_key", "lifecycle_stage"]]
    paired = before.merge(after, on="user_key", how="outer", suffixes=("_from", "_to"))
    pairs = pd.DataFrame(
        {
            "from_stage": paired["lifecycle_stage_from"].astype(object).fillna(NO_STAGE).astype(str),
            "to_stage": paired["lifecycle_stage_to"].astype(object).fillna(NO_STAGE).astype(str),
        }
    )
    counts = pairs.groupby(["from_stage", "to_stage"]).size().rename("users").reset_index()
    counts["users"] = counts["users"].astype("int64")
    return order_transitions(counts)


def order_transitions(counts: pd.DataFrame) -> pd.DataFrame:
    """Transition counts in lifecycle order of (from_stage, to_stage), however they were counted."""
    counts = counts.sort_values(["from_stage", "to_stage"], kind="stable")
    sort_key = counts["from_stage"].map(_stage_order) * 100 + counts["to_stage"].map(_stage_order)
    return counts.iloc[np.argsort(sort_key.to_numpy(), kind="stable")].reset_index(drop=True)


def confusion_matrix(
    predicted: pd.DataFrame,
    truth: pd.DataFrame,
    predicted_column: str = "lifecycle_stage",
    truth_column: str = "lifecycle_stage",
) -> pd.DataFrame:
    """Count people by (true stage, predicted stage); rows are truth, columns predicted, missing = 'none'."""
    paired = truth[["user_key", truth_column]].merge(
        predicted[["user_key", predicted_column]],
        on="user_key",
        how="outer",
        suffixes=("_truth", "_predicted"),
    )
    truth_name = f"{truth_column}_truth" if truth_column == predicted_column else truth_column
    predicted_name = f"{predicted_column}_predicted" if truth_column == predicted_column else predicted_column
    truth_stage = paired[truth_name].astype(object).fillna(NO_STAGE).astype(str).rename("truth")
    predicted_stage = paired[predicted_name].astype(object).fillna(NO_STAGE).astype(str).rename("predicted")
    seen = set(truth_stage) | set(predicted_stage)
    labels = [*STAGES, *sorted(seen - set(STAGES) - {NO_STAGE}), *([NO_STAGE] if NO_STAGE in seen else [])]
    matrix = pd.crosstab(truth_stage, predicted_stage).reindex(index=labels, columns=labels, fill_value=0)
    return matrix.astype("int64")


def accuracy(matrix: pd.DataFrame) -> float:
    """Share of people whose predicted stage equals their true stage, from a confusion matrix."""
    total = int(matrix.to_numpy().sum())
    if total == 0:
        raise ValueError("cannot score an empty confusion matrix")
    correct = sum(int(matrix.loc[label, label]) for label in matrix.index if label in matrix.columns)
    return correct / total


def lifecycle_rules_markdown(config: LifecycleConfig | None = None) -> str:
    """Render the lifecycle rules with the configured thresholds, so the docs cannot drift from the code."""
    config = config or LifecycleConfig()
    multiple = f"{config.declining_interval_multiple:g}"
    rows = [
        ("churned", f"no activity at all for {config.churn_days} days or more (buyers and non-buyers)"),
        ("prospect", "seen, never paid"),
        ("new", f"first paid order fewer than {config.new_days} days ago"),
        (
            "declining",
            f"days since last paid order > max({config.declining_min_days}, {multiple} x median order "
            f"interval); a buyer with fewer than 2 orders uses {config.declining_min_days}",
        ),
        ("mature", f"{config.mature_min_orders} or more paid orders, not lapsed"),
        ("growing", f"2 to {config.mature_min_orders - 1} paid orders, not lapsed"),
        ("new", "one paid order, past the new window, not lapsed yet (first purchase cycle)"),
    ]
    lines = [
        "## Lifecycle stages",
        "",
        "Day counts are whole calendar days up to the as-of date; the first matching rule wins.",
        "",
        "| precedence | stage | rule |",
        "|---|---|---|",
        *[f"| {rank} | {stage} | {rule} |" for rank, (stage, rule) in enumerate(rows, start=1)],
    ]
    return "\n".join(lines) + "\n"
