"""Campaign evaluation: statistics checked against hand computation, periods, membership and loading."""

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_assets.campaigns import (
    RESULT_SCHEMA,
    Campaign,
    CampaignFileError,
    campaign_periods,
    evaluate_campaign,
    evaluate_campaigns,
    load_campaign,
    load_campaigns,
    mean_difference,
    membership_at,
    proportion_difference,
)

REPO = Path(__file__).resolve().parents[2]
Z_975 = 1.959963984540054  # standard normal 97.5% quantile


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def test_conversion_uplift_interval_and_z_test_match_hand_computation():
    # Treatment 90 of 900 convert (10%), control 5 of 100 (5%).
    result = proportion_difference(90, 900, 5, 100)
    uplift = 0.10 - 0.05
    interval_se = math.sqrt(0.10 * 0.90 / 900 + 0.05 * 0.95 / 100)  # unpooled: sqrt(0.000575)
    pooled = 95 / 1000
    test_se = math.sqrt(pooled * (1 - pooled) * (1 / 900 + 1 / 100))
    z = uplift / test_se
    assert result["uplift"] == pytest.approx(uplift, abs=1e-15)
    assert result["ci_low"] == pytest.approx(uplift - Z_975 * interval_se, abs=1e-12)
    assert result["ci_high"] == pytest.approx(uplift + Z_975 * interval_se, abs=1e-12)
    assert result["ci_low"] == pytest.approx(0.003002, abs=1e-6)
    assert result["ci_high"] == pytest.approx(0.096998, abs=1e-6)
    assert result["z"] == pytest.approx(z, rel=1e-12)
    assert result["z"] == pytest.approx(1.61772, abs=1e-5)
    assert result["p_value"] == pytest.approx(normal_two_sided_p(z), rel=1e-9)
    assert result["p_value"] == pytest.approx(0.10572, abs=1e-5)


def test_nobody_converting_anywhere_is_no_difference_and_nothing_to_test():
    assert proportion_difference(0, 400, 0, 50) == {
        "uplift": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
        "z": 0.0,
        "p_value": 1.0,
    }


def test_zero_converters_in_control_only_still_gives_a_test():
    # Treatment 6 of 200 (3%), control 0 of 50: the interval uses only the treatment's variance.
    result = proportion_difference(6, 200, 0, 50)
    interval_se = math.sqrt(0.03 * 0.97 / 200)
    pooled = 6 / 250
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * (1 / 200 + 1 / 50))
    assert result["ci_low"] == pytest.approx(0.03 - Z_975 * interval_se, abs=1e-12)
    assert result["ci_high"] == pytest.approx(0.03 + Z_975 * interval_se, abs=1e-12)
    assert result["z"] == pytest.approx(z, rel=1e-12)
    assert result["p_value"] == pytest.approx(normal_two_sided_p(z), rel=1e-9)


def test_an_empty_group_gives_no_statistics():
    assert all(math.isnan(value) for value in proportion_difference(3, 10, 0, 0).values())


def test_revenue_uplift_is_welch_with_the_satterthwaite_degrees_of_freedom():
    treatment, control = np.array([0.0, 0.0, 10.0, 30.0]), np.array([0.0, 10.0, 0.0])
    result = mean_difference(treatment, control)
    # Means 10 and 10/3; sample variances 200 and 100/3.
    difference = 10 - 10 / 3
    se = math.sqrt(200 / 4 + (100 / 3) / 3)
    df = se**4 / ((200 / 4) ** 2 / 3 + ((100 / 3) / 3) ** 2 / 2)
    t = difference / se
    quantile = stats.t.ppf(0.975, df)
    assert result["difference"] == pytest.approx(difference, rel=1e-12)
    assert result["degrees_of_freedom"] == pytest.approx(df, rel=1e-12)
    assert result["degrees_of_freedom"] == pytest.approx(4.172414, abs=1e-6)
    assert result["t"] == pytest.approx(t, rel=1e-12)
    assert result["t"] == pytest.approx(0.852803, abs=1e-6)
    assert result["ci_low"] == pytest.approx(difference - quantile * se, rel=1e-9)
    assert result["ci_high"] == pytest.approx(difference + quantile * se, rel=1e-9)
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9)


def test_revenue_with_no_buyers_in_either_group_is_an_exact_zero():
    result = mean_difference(np.zeros(5), np.zeros(3))
    assert (result["difference"], result["ci_low"], result["ci_high"], result["t"], result["p_value"]) == (
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    )
    assert math.isnan(mean_difference(np.array([1.0, 2.0]), np.array([5.0]))["p_value"])


def campaign(**overrides) -> Campaign:
    fields = {
        "name": "c",
        "audience": "perks",
        "start_date": date(2026, 6, 10),
        "window_days": 5,
        "pre_period_days": 3,
        "goal_event": None,
    }
    return Campaign(**(fields | overrides))


def test_the_pre_period_ends_the_day_before_the_start_and_the_window_counts_the_start():
    periods = campaign_periods(campaign())
    assert [(p.name, p.first_day, p.last_day) for p in periods] == [
        ("pre_period", date(2026, 6, 7), date(2026, 6, 9)),
        ("campaign", date(2026, 6, 10), date(2026, 6, 14)),
    ]
    assert [p.name for p in campaign_periods(campaign(pre_period_days=0))] == ["campaign"]


HISTORY = pd.DataFrame(
    {
        "audience": ["perks"] * 3 + ["perks"] * 2 + ["other"],
        "user_key": ["a", "b", "c", "a", "z", "a"],
        "is_control": [False, True, False, False, True, False],
        "as_of_date": [date(2026, 6, 1)] * 3 + [date(2026, 6, 20)] * 2 + [date(2026, 6, 25)],
    }
)


def test_membership_is_the_last_snapshot_on_or_before_the_start():
    members, as_of = membership_at(HISTORY, "perks", date(2026, 6, 10))
    assert as_of == date(2026, 6, 1)
    assert members.to_numpy().tolist() == [["a", False], ["b", True], ["c", False]]
    members, as_of = membership_at(HISTORY, "perks", date(2026, 5, 1))
    assert as_of == date(2026, 6, 1), "a campaign older than the history falls back to the first snapshot"
    members, as_of = membership_at(HISTORY, "perks", date(2026, 6, 25))
    assert as_of == date(2026, 6, 25) and members.empty, "on 06-25 the audience had no members"


def outcome_data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Treatment t1..t4, control k1..k2; orders and coupon events placed around a 06-10..06-14 window."""
    history = pd.DataFrame(
        {
            "audience": "perks",
            "user_key": ["t1", "t2", "t3", "t4", "k1", "k2"],
            "is_control": [False, False, False, False, True, True],
            "as_of_date": date(2026, 6, 9),
        }
    )
    orders = pd.DataFrame(
        {
            "user_key": ["t1", "t1", "t2", "t3", "k1", "k2", "outsider"],
            "ordered_date": [
                date(2026, 6, 10),
                date(2026, 6, 14),
                date(2026, 6, 15),  # the day after the window
                date(2026, 6, 8),  # pre-period
                date(2026, 6, 12),
                date(2026, 6, 7),  # pre-period
                date(2026, 6, 11),
            ],
            "paid_amount": [100.0, 50.0, 80.0, 40.0, 30.0, 20.0, 999.0],
        }
    )
    events = pd.DataFrame(
        {
            "user_key": ["t4", "t4", "k2"],
            "event_name": ["Coupon Applied", "Coupon Applied", "Coupon Received"],
            # As DuckDB hands DATE columns to pandas: datetime64, not date objects.
            "occurred_date": pd.to_datetime(["2026-06-11", "2026-06-12", "2026-06-11"]),
        }
    )
    return history, orders, events


def test_a_campaign_counts_converters_and_revenue_per_group_in_each_period():
    history, orders, events = outcome_data()
    results = evaluate_campaign(campaign(), history, orders, events, as_of_date=date(2026, 6, 30))
    pre, window = results.iloc[0], results.iloc[1]
    assert (pre["period"], window["period"]) == ("pre_period", "campaign")
    assert (window["treatment_people"], window["control_people"]) == (4, 2)
    assert (window["treatment_converters"], window["control_converters"]) == (1, 1)  # t1; k1
    assert window["treatment_conversion_rate"] == 0.25 and window["control_conversion_rate"] == 0.5
    assert window["conversion_uplift"] == -0.25
    assert window["treatment_revenue_per_person"] == 150 / 4
    assert window["control_revenue_per_person"] == 15.0
    assert window["revenue_uplift"] == 150 / 4 - 15
    assert (pre["treatment_converters"], pre["control_converters"]) == (1, 1)  # t3; k2
    assert pre["treatment_revenue_per_person"] == 10.0 and pre["control_revenue_per_person"] == 10.0
    assert window["membership_as_of_date"] == date(2026, 6, 9)
    assert window["is_period_complete"] and window["goal"] == "order"


def test_an_event_goal_counts_people_with_the_event_and_a_running_window_is_cut_at_as_of():
    history, orders, events = outcome_data()
    results = evaluate_campaign(
        campaign(goal_event="Coupon Applied"), history, orders, events, as_of_date=date(2026, 6, 11)
    )
    window = results.set_index("period").loc["campaign"]
    assert window["goal"] == "event:Coupon Applied"
    assert (window["treatment_converters"], window["control_converters"]) == (1, 0)  # t4 on 06-11 only
    assert window["observed_through_date"] == date(2026, 6, 11) and not window["is_period_complete"]
    assert window["treatment_revenue_per_person"] == 100 / 4  # t1's 06-10 order; 06-14 is after as-of
    assert window["control_revenue_per_person"] == 0.0


def test_a_campaign_with_zero_converters_reports_no_uplift_and_p_of_one():
    history, orders, events = outcome_data()
    results = evaluate_campaign(
        campaign(goal_event="Never Happens"), history, orders, events, as_of_date=date(2026, 6, 30)
    )
    window = results.set_index("period").loc["campaign"]
    assert (window["treatment_converters"], window["control_converters"]) == (0, 0)
    assert (window["conversion_uplift"], window["conversion_p_value"]) == (0.0, 1.0)
    assert (window["conversion_uplift_ci_low"], window["conversion_uplift_ci_high"]) == (0.0, 0.0)


def test_campaigns_not_started_add_no_rows_and_the_empty_table_keeps_its_types():
    history, orders, events = outcome_data()
    results = evaluate_campaigns(
        [campaign(start_date=date(2026, 7, 1), pre_period_days=0)], history, orders, events, date(2026, 6, 30)
    )
    assert results.empty and list(results.columns) == list(RESULT_SCHEMA)
    assert results.dtypes["treatment_people"] == "int64" and results.dtypes["conversion_uplift"] == "float64"


def test_the_shipped_campaign_files_load_against_the_shipped_audiences():
    campaigns = load_campaigns(
        REPO / "catalogue" / "campaigns",
        {"high_value_winback", "second_purchase_offer"},
    )
    by_name = {c.name: c for c in campaigns}
    assert by_name["winback_coupon_2026_06"].goal == "order"
    assert by_name["winback_coupon_2026_06"].start_date == date(2026, 6, 1)
    assert by_name["second_purchase_coupon_use_2026_06"].goal_event == "Coupon Applied"


BASE = "name: c\naudience: perks\nstart_date: 2026-06-01\nwindow_days: 7\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "goal: revenue\n", "goal must be `order` or `event: <event name>`"),
        (BASE + "goal:\n  event: ''\n", "goal must be"),
        (BASE.replace("perks", "nobody") + "goal: order\n", "unknown audience 'nobody'"),
        (BASE.replace("7", "0") + "goal: order\n", "window_days must be a whole number >= 1"),
        (BASE.replace("2026-06-01", "June 1") + "goal: order\n", "start_date must be YYYY-MM-DD"),
        (BASE + "goal: order\npre_period_days: -1\n", "pre_period_days must be"),
        ("name: c\ngoal: order\n", "missing audience, start_date, window_days"),
    ],
)
def test_campaign_file_errors_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CampaignFileError, match=f"bad.yml: .*{message}"):
        load_campaign(path, {"perks"})


def test_pre_period_defaults_to_the_window_and_names_must_be_unique(tmp_path):
    (tmp_path / "a.yml").write_text(BASE + "goal: order\n", encoding="utf-8")
    assert load_campaign(tmp_path / "a.yml").pre_period_days == 7
    (tmp_path / "b.yml").write_text(BASE + "goal: order\n", encoding="utf-8")
    with pytest.raises(CampaignFileError, match="b.yml: campaign 'c' is already defined in a.yml"):
        load_campaigns(tmp_path)
