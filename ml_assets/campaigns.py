"""Campaign evaluation: treatment against the held-out control group of the campaign's audience.

A campaign file names an audience, a start date, a window and a goal (any paid order, or one tracked event).
For the window and for a pre-period before the start (to show the groups were alike) it compares people,
converters, conversion rate and revenue per person. The conversion uplift has a normal-approximation (Wald)
95% interval and a two-proportion z-test; the revenue uplift a Welch t-test and its interval.

Membership is the audience as it stood at the campaign's start: the latest snapshot in the membership
history on or before the start date (or, for a campaign that started before the first snapshot, the first
one; `membership_as_of_date` says which was used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from ml_assets.tags import TAG_ID

REQUIRED_FIELDS = ("name", "audience", "start_date", "window_days", "goal")
ORDER_GOAL = "order"

# Column order and types of ml.campaign_results (dates as Python dates so DuckDB stores DATE).
RESULT_SCHEMA = {
    "campaign": "str",
    "audience": "str",
    "goal": "str",
    "period": "str",
    "period_start_date": "object",
    "period_end_date": "object",
    "observed_through_date": "object",
    "is_period_complete": "bool",
    "membership_as_of_date": "object",
    "treatment_people": "int64",
    "control_people": "int64",
    "treatment_converters": "int64",
    "control_converters": "int64",
    **{
        column: "float64"
        for column in (
            "treatment_conversion_rate",
            "control_conversion_rate",
            "conversion_uplift",
            "conversion_uplift_ci_low",
            "conversion_uplift_ci_high",
            "conversion_z",
            "conversion_p_value",
            "treatment_revenue_per_person",
            "control_revenue_per_person",
            "revenue_uplift",
            "revenue_uplift_ci_low",
            "revenue_uplift_ci_high",
            "revenue_t",
            "revenue_p_value",
            "revenue_degrees_of_freedom",
        )
    },
    "as_of_date": "object",
}


class CampaignFileError(ValueError):
    """A campaign file is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class Campaign:
    name: str
    audience: str
    start_date: date
    window_days: int
    pre_period_days: int
    goal_event: str | None  # None: any paid order
    description: str = ""
    owner: str = ""

    @property
    def goal(self) -> str:
        return ORDER_GOAL if self.goal_event is None else f"event:{self.goal_event}"


@dataclass(frozen=True)
class Period:
    name: str
    first_day: date
    last_day: date  # inclusive


def _whole_number(entry: dict, field: str, minimum: int, where: str) -> int:
    value = entry[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CampaignFileError(f"{where}: {field} must be a whole number >= {minimum}, not {value!r}")
    return value


def _goal_event(goal: object, where: str) -> str | None:
    if goal == ORDER_GOAL:
        return None
    if isinstance(goal, dict) and set(goal) == {"event"} and str(goal["event"] or "").strip():
        return str(goal["event"]).strip()
    raise CampaignFileError(f"{where}: goal must be `order` or `event: <event name>`, not {goal!r}")


def load_campaign(path: Path, known_audiences: set[str] | None = None) -> Campaign:
    """Parse and check one campaign file; the audience must exist when the known ones are given."""
    where = path.name
    try:
        entry = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CampaignFileError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(entry, dict):
        raise CampaignFileError(f"{where}: expected a mapping with {', '.join(REQUIRED_FIELDS)}")
    missing = [field for field in REQUIRED_FIELDS if entry.get(field) in (None, "")]
    if missing:
        raise CampaignFileError(f"{where}: missing {', '.join(missing)}")
    name = str(entry["name"])
    if not TAG_ID.match(name):
        raise CampaignFileError(
            f"{where}: name must be lowercase letters, digits and underscores, not {name!r}"
        )
    audience = str(entry["audience"])
    if known_audiences is not None and audience not in known_audiences:
        raise CampaignFileError(
            f"{where}: unknown audience {audience!r} (known: {', '.join(sorted(known_audiences))})"
        )
    try:
        start_date = date.fromisoformat(str(entry["start_date"]))
    except ValueError as error:
        raise CampaignFileError(
            f"{where}: start_date must be YYYY-MM-DD, not {entry['start_date']!r}"
        ) from error
    window_days = _whole_number(entry, "window_days", 1, where)
    return Campaign(
        name=name,
        audience=audience,
        start_date=start_date,
        window_days=window_days,
        pre_period_days=_whole_number(entry, "pre_period_days", 0, where)
        if "pre_period_days" in entry
        else window_days,
        goal_event=_goal_event(entry["goal"], where),
        description=str(entry.get("description") or ""),
        owner=str(entry.get("owner") or ""),
    )


def load_campaigns(folder: Path, known_audiences: set[str] | None = None) -> list[Campaign]:
    """Every `*.yml` / `*.yaml` campaign in a folder, by file name; campaign names must be unique."""
    campaigns, seen = [], {}
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        campaign = load_campaign(path, known_audiences)
        if campaign.name in seen:
            raise CampaignFileError(
                f"{path.name}: campaign {campaign.name!r} is already defined in {seen[campaign.name]}"
            )
        seen[campaign.name] = path.name
        campaigns.append(campaign)
    return campaigns


def campaign_periods(campaign: Campaign) -> list[Period]:
    """The pre-period (the days just before the start, if any) and the campaign window."""
    periods = []
    if campaign.pre_period_days:
        periods.append(
            Period(
                "pre_period",
                campaign.start_date - timedelta(days=campaign.pre_period_days),
                campaign.start_date - timedelta(days=1),
            )
        )
    periods.append(
        Period(
            "campaign", campaign.start_date, campaign.start_date + timedelta(days=campaign.window_days - 1)
        )
    )
    return periods


def membership_at(history: pd.DataFrame, audience: str, start_date: date) -> tuple[pd.DataFrame, date | None]:
    """The audience's (user_key, is_control) in the last snapshot on or before the start (else the first)."""
    snapshot_dates = sorted(set(pd.to_datetime(history["as_of_date"]).dt.date))
    if not snapshot_dates:
        return pd.DataFrame({"user_key": pd.Series(dtype="str"), "is_control": pd.Series(dtype="bool")}), None
    on_or_before = [day for day in snapshot_dates if day <= start_date]
    chosen = on_or_before[-1] if on_or_before else snapshot_dates[0]
    rows = history[
        (pd.to_datetime(history["as_of_date"]).dt.date == chosen) & (history["audience"] == audience)
    ]
    return rows[["user_key", "is_control"]].reset_index(drop=True), chosen


def _within(days: pd.Series, first_day: date, last_day: date) -> pd.Series:
    """Dates from DuckDB arrive as datetime64, from hand-made frames as date objects; compare both."""
    return pd.to_datetime(days).between(pd.Timestamp(first_day), pd.Timestamp(last_day))


def period_outcomes(
    members: pd.DataFrame,
    paid_orders: pd.DataFrame,
    goal_events: pd.DataFrame,
    goal_event: str | None,
    first_day: date,
    last_day: date,
) -> pd.DataFrame:
    """Per member: did they reach the goal in [first_day, last_day], and how much did they pay then."""
    in_period = paid_orders[_within(paid_orders["ordered_date"], first_day, last_day)]
    revenue = in_period.groupby("user_key")["paid_amount"].sum()
    if goal_event is None:
        converters = set(in_period["user_key"])
    else:
        events = goal_events[
            (goal_events["event_name"] == goal_event)
            & _within(goal_events["occurred_date"], first_day, last_day)
        ]
        converters = set(events["user_key"])
    return pd.DataFrame(
        {
            "user_key": members["user_key"].to_numpy(),
            "is_control": members["is_control"].astype(bool).to_numpy(),
            "converted": members["user_key"].isin(converters).to_numpy(),
            "revenue": members["user_key"].map(revenue).fillna(0.0).astype("float64").to_numpy(),
        }
    )


def proportion_difference(
    converters_treatment: int,
    people_treatment: int,
    converters_control: int,
    people_control: int,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Uplift p_t - p_c with a Wald interval (unpooled SE) and a two-sided two-proportion z-test (pooled SE).

    With nobody (or everybody) converting in both groups the difference is exactly 0 and there is nothing to
    test: z = 0, p = 1 and the interval is [0, 0].
    """
    nan = float("nan")
    if people_treatment == 0 or people_control == 0:
        return {"uplift": nan, "ci_low": nan, "ci_high": nan, "z": nan, "p_value": nan}
    rate_t = converters_treatment / people_treatment
    rate_c = converters_control / people_control
    uplift = rate_t - rate_c
    critical = stats.norm.ppf(0.5 + confidence / 2)
    interval_se = math.sqrt(rate_t * (1 - rate_t) / people_treatment + rate_c * (1 - rate_c) / people_control)
    pooled = (converters_treatment + converters_control) / (people_treatment + people_control)
    test_se = math.sqrt(pooled * (1 - pooled) * (1 / people_treatment + 1 / people_control))
    if test_se == 0:
        z, p_value = 0.0, 1.0
    else:
        z = uplift / test_se
        p_value = float(2 * stats.norm.sf(abs(z)))
    return {
        "uplift": uplift,
        "ci_low": uplift - critical * interval_se,
        "ci_high": uplift + critical * interval_se,
        "z": z,
        "p_value": p_value,
    }


def mean_difference(treatment: np.ndarray, control: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Difference of means with Welch's t-test (unequal variances) and its interval.

    Needs two people per group; when neither group varies (e.g. nobody bought) the difference is exact:
    equal means give t = 0, p = 1 and the interval [0, 0]; unequal ones are left undefined (NaN).
    """
    nan = float("nan")
    treatment, control = np.asarray(treatment, dtype="float64"), np.asarray(control, dtype="float64")
    difference = float(treatment.mean() - control.mean()) if len(treatment) and len(control) else nan
    undefined = {
        "difference": difference,
        "ci_low": nan,
        "ci_high": nan,
        "t": nan,
        "p_value": nan,
        "degrees_of_freedom": nan,
    }
    if len(treatment) < 2 or len(control) < 2:
        return undefined
    if treatment.var(ddof=1) == 0 and control.var(ddof=1) == 0:
        if difference == 0:
            return undefined | {"ci_low": 0.0, "ci_high": 0.0, "t": 0.0, "p_value": 1.0}
        return undefined
    result = stats.ttest_ind(treatment, control, equal_var=False)
    interval = result.confidence_interval(confidence)
    return {
        "difference": difference,
        "ci_low": float(interval.low),
        "ci_high": float(interval.high),
        "t": float(result.statistic),
        "p_value": float(result.pvalue),
        "degrees_of_freedom": float(result.df),
    }


def compare_groups(outcomes: pd.DataFrame, confidence: float = 0.95) -> dict[str, float | int]:
    """Treatment against control: people, converters, rates, revenue per person, and both uplifts."""
    treatment, control = outcomes[~outcomes["is_control"]], outcomes[outcomes["is_control"]]
    people_t, people_c = len(treatment), len(control)
    converters_t, converters_c = int(treatment["converted"].sum()), int(control["converted"].sum())
    conversion = proportion_difference(converters_t, people_t, converters_c, people_c, confidence)
    revenue = mean_difference(treatment["revenue"].to_numpy(), control["revenue"].to_numpy(), confidence)
    nan = float("nan")
    return {
        "treatment_people": people_t,
        "control_people": people_c,
        "treatment_converters": converters_t,
        "control_converters": converters_c,
        "treatment_conversion_rate": converters_t / people_t if people_t else nan,
        "control_conversion_rate": converters_c / people_c if people_c else nan,
        "conversion_uplift": conversion["uplift"],
        "conversion_uplift_ci_low": conversion["ci_low"],
        "conversion_uplift_ci_high": conversion["ci_high"],
        "conversion_z": conversion["z"],
        "conversion_p_value": conversion["p_value"],
        "treatment_revenue_per_person": float(treatment["revenue"].mean()) if people_t else nan,
        "control_revenue_per_person": float(control["revenue"].mean()) if people_c else nan,
        "revenue_uplift": revenue["difference"],
        "revenue_uplift_ci_low": revenue["ci_low"],
        "revenue_uplift_ci_high": revenue["ci_high"],
        "revenue_t": revenue["t"],
        "revenue_p_value": revenue["p_value"],
        "revenue_degrees_of_freedom": revenue["degrees_of_freedom"],
    }


def evaluate_campaign(
    campaign: Campaign,
    membership_history: pd.DataFrame,
    paid_orders: pd.DataFrame,
    goal_events: pd.DataFrame,
    as_of_date: date,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per period begun by the as-of date; a period still running is cut at the as-of date."""
    members, membership_date = membership_at(membership_history, campaign.audience, campaign.start_date)
    rows = []
    for period in campaign_periods(campaign):
        if period.first_day > as_of_date:
            continue
        observed_through = min(period.last_day, as_of_date)
        outcomes = period_outcomes(
            members, paid_orders, goal_events, campaign.goal_event, period.first_day, observed_through
        )
        rows.append(
            {
                "campaign": campaign.name,
                "audience": campaign.audience,
                "goal": campaign.goal,
                "period": period.name,
                "period_start_date": period.first_day,
                "period_end_date": period.last_day,
                "observed_through_date": observed_through,
                "is_period_complete": period.last_day <= as_of_date,
                "membership_as_of_date": membership_date,
                **compare_groups(outcomes, confidence),
                "as_of_date": as_of_date,
            }
        )
    return pd.DataFrame(rows)


def evaluate_campaigns(
    campaigns: list[Campaign],
    membership_history: pd.DataFrame,
    paid_orders: pd.DataFrame,
    goal_events: pd.DataFrame,
    as_of_date: date,
) -> pd.DataFrame:
    """Every campaign's rows together; campaigns not yet started add none."""
    frames = [
        evaluate_campaign(campaign, membership_history, paid_orders, goal_events, as_of_date)
        for campaign in campaigns
    ]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in RESULT_SCHEMA.items()})
    return pd.concat(frames, ignore_index=True)[list(RESULT_SCHEMA)].astype(RESULT_SCHEMA)
