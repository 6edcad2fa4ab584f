"""BG/NBD + Gamma-Gamma: CDNOW published figures, hand-computed small cases and invariants."""

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from ml_assets import clv

CDNOW_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cdnow"
CALIBRATION_END = "1997-09-30"
HOLDOUT_END = "1998-06-30"
PUBLISHED_BGNBD = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_GAMMA_GAMMA = clv.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


@pytest.fixture(scope="module")
def cdnow_transactions() -> pd.DataFrame:
    raw = pd.read_csv(
        CDNOW_DIR / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["masterid", "sampleid", "date", "cds", "sales"],
        dtype={"date": "string"},
    )
    return pd.DataFrame(
        {
            "customer_id": raw["sampleid"].astype("string"),
            "occurred_at": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["sales"],
        }
    )


@pytest.fixture(scope="module")
def cdnow_summary(cdnow_transactions) -> pd.DataFrame:
    return clv.rfm_summary(cdnow_transactions, CALIBRATION_END)


@pytest.fixture(scope="module")
def cdnow_backtest(cdnow_transactions) -> clv.BacktestResult:
    return clv.backtest_bgnbd(cdnow_transactions, CALIBRATION_END, HOLDOUT_END)


# CDNOW published figures (Fader, Hardie & Lee 2005; Fader & Hardie 2013)


def test_cdnow_summary_counts_match_published(cdnow_summary):
    assert len(cdnow_summary) == 2357
    assert (cdnow_summary["frequency"] == 0).sum() == 1411
    assert cdnow_summary["frequency"].sum() == 2457
    assert (cdnow_summary["T"] <= 39.0).all()
    assert cdnow_summary["T"].max() == pytest.approx(272 / 7)


def test_cdnow_bgnbd_fit_matches_published(cdnow_summary):
    fit = clv.fit_bgnbd(cdnow_summary)
    assert fit.converged
    assert fit.n_customers == 2357
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fit.params, name) == pytest.approx(getattr(PUBLISHED_BGNBD, name), rel=0.01)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_cdnow_bgnbd_nelder_mead_reaches_the_same_optimum(cdnow_summary):
    gradient_based = clv.fit_bgnbd(cdnow_summary)
    derivative_free = clv.fit_bgnbd(cdnow_summary, method="Nelder-Mead")
    assert derivative_free.converged
    assert derivative_free.log_likelihood == pytest.approx(gradient_based.log_likelihood, abs=1e-6)
    assert derivative_free.params.a == pytest.approx(gradient_based.params.a, rel=1e-4)


def test_cdnow_log_likelihood_at_published_parameters(cdnow_summary):
    log_likelihood = clv.bgnbd_log_likelihood(
        PUBLISHED_BGNBD, cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"]
    )
    assert log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_published_point_values():
    expected = clv.bgnbd_expected_purchases(PUBLISHED_BGNBD, 39.0, 2, 30.43, 38.86)
    assert float(expected) == pytest.approx(1.226, abs=5e-4)
    assert float(clv.bgnbd_p_alive(PUBLISHED_BGNBD, 2, 30.43, 38.86)) == pytest.approx(0.7266, abs=5e-5)
    no_purchase = clv.bgnbd_probability_no_purchase(PUBLISHED_BGNBD, 39.0)
    assert float(no_purchase) == pytest.approx(0.5737864, abs=1e-7)


def test_cdnow_gamma_gamma_fit_matches_published(cdnow_summary):
    fit = clv.fit_gamma_gamma(cdnow_summary)
    assert fit.converged
    assert fit.n_customers == 946
    for name in ("p", "q", "gamma"):
        assert getattr(fit.params, name) == pytest.approx(getattr(PUBLISHED_GAMMA_GAMMA, name), rel=0.01)
    assert fit.log_likelihood == pytest.approx(-4055.9, abs=0.1)
    repeaters = cdnow_summary[cdnow_summary["frequency"] > 0]
    at_published = clv.gamma_gamma_log_likelihood(
        PUBLISHED_GAMMA_GAMMA, repeaters["frequency"], repeaters["monetary_value"]
    )
    assert at_published == pytest.approx(-4055.9, abs=0.1)


def test_cdnow_backtest_counts_holdout_and_tracks_it(cdnow_backtest, cdnow_summary):
    assert cdnow_backtest.total_actual == 1882
    assert cdnow_backtest.holdout_periods == pytest.approx(39.0)
    assert len(cdnow_backtest.per_customer) == 2357
    # The sum of conditional forecasts must agree with the model's unconditional cohort forecast ...
    T = cdnow_summary["T"].to_numpy()
    params = cdnow_backtest.fit.params
    unconditional = clv.bgnbd_expected_purchases_new_customer(
        params, T + 39.0
    ) - clv.bgnbd_expected_purchases_new_customer(params, T)
    assert cdnow_backtest.total_predicted == pytest.approx(unconditional.sum(), rel=0.02)
    # ... and BG/NBD under-forecasts the CDNOW holdout only mildly (FHL 2005, figure 1).
    assert cdnow_backtest.total_predicted == pytest.approx(1882, rel=0.15)
    assert cdnow_backtest.correlation > 0.5


# rfm_summary on hand-made logs


def _transactions(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "occurred_at", "amount"])


def test_rfm_summary_merges_same_day_and_stops_at_calibration_end():
    transactions = _transactions(
        [
            ("a", "2024-01-01 10:00", 10.0),
            ("a", "2024-01-01 18:00", 5.0),
            ("a", "2024-01-08 09:00", 20.0),
            ("a", "2024-01-22 09:00", 30.0),
            ("a", "2024-01-22 21:00", 10.0),
            ("a", "2024-02-05 09:00", 99.0),
            ("b", "2024-01-15 12:00", 7.5),
            ("c", "2024-02-01 12:00", 3.0),
            ("d", "2024-01-29 23:30", 4.0),
        ]
    )
    summary = clv.rfm_summary(transactions, "2024-01-29").set_index("customer_id")
    assert list(summary.index) == ["a", "b", "d"]
    assert summary.loc["a"].to_dict() == {"frequency": 2, "recency": 3.0, "T": 4.0, "monetary_value": 30.0}
    assert summary.loc["b"].to_dict() == {"frequency": 0, "recency": 0.0, "T": 2.0, "monetary_value": 0.0}
    assert summary.loc["d"].to_dict() == {"frequency": 0, "recency": 0.0, "T": 0.0, "monetary_value": 0.0}


def test_rfm_summary_time_unit_and_observation_start():
    transactions = _transactions(
        [("a", "2024-01-01", 1.0), ("a", "2024-01-05", 2.0), ("a", "2024-01-10", 4.0)]
    )
    in_days = clv.rfm_summary(transactions, "2024-01-11", time_unit_days=1.0)
    assert in_days[["frequency", "recency", "T"]].iloc[0].tolist() == [2, 9.0, 10.0]
    late_start = clv.rfm_summary(
        transactions, "2024-01-11", time_unit_days=1.0, observation_start="2024-01-05"
    )
    assert late_start[["frequency", "recency", "T", "monetary_value"]].iloc[0].tolist() == [1, 5.0, 6.0, 4.0]


def test_rfm_summary_uses_local_calendar_days_and_decimal_amounts():
    shanghai = pd.to_datetime(["2024-03-01 23:30", "2024-03-02 00:30", "2024-03-02 08:00"]).tz_localize(
        "Asia/Shanghai"
    )
    transactions = pd.DataFrame(
        {
            "customer_id": pd.array(["u1", "u1", "u1"], dtype="string"),
            "occurred_at": shanghai,
            "amount": [Decimal("10.00"), Decimal("12.50"), Decimal("0.50")],
        }
    )
    summary = clv.rfm_summary(transactions, pd.Timestamp("2024-03-08 12:00", tz="Asia/Shanghai"), 1.0)
    # In UTC all three fall on 1 March; in local time the last two are a repeat purchase the next day.
    assert summary[["frequency", "recency", "T", "monetary_value"]].iloc[0].tolist() == [1, 1.0, 7.0, 13.0]


def test_rfm_summary_rejects_bad_input():
    with pytest.raises(ValueError, match="amount"):
        clv.rfm_summary(pd.DataFrame({"customer_id": ["a"], "occurred_at": ["2024-01-01"]}), "2024-02-01")
    with pytest.raises(ValueError, match="missing"):
        clv.rfm_summary(_transactions([("a", None, 1.0)]), "2024-02-01")


# BG/NBD on hand-computed cases


def _hand_bgnbd_likelihood(r, alpha, a, b, x, t_x, T):
    def beta(u, v):
        return math.gamma(u) * math.gamma(v) / math.gamma(u + v)

    poisson_gamma = math.gamma(r + x) * alpha**r / math.gamma(r)
    alive = beta(a, b + x) / beta(a, b) * poisson_gamma / (alpha + T) ** (r + x)
    dropped = beta(a + 1, b + x - 1) / beta(a, b) * poisson_gamma / (alpha + t_x) ** (r + x) if x > 0 else 0.0
    return alive + dropped


def test_bgnbd_log_likelihood_matches_hand_formula():
    params = clv.BgNbdParams(r=1.5, alpha=2.0, a=0.8, b=2.5)
    customers = [(3, 4.0, 6.0), (0, 0.0, 5.0), (1, 0.5, 0.5), (7, 9.0, 12.0)]
    expected = sum(math.log(_hand_bgnbd_likelihood(1.5, 2.0, 0.8, 2.5, *c)) for c in customers)
    x, t_x, T = zip(*customers, strict=True)
    assert clv.bgnbd_log_likelihood(params, x, t_x, T) == pytest.approx(expected, rel=1e-12)


def test_bgnbd_gradient_matches_finite_differences():
    x = np.array([0.0, 1.0, 3.0, 12.0, 40.0])
    t_x = np.array([0.0, 2.0, 5.5, 20.0, 30.0])
    T = np.array([4.0, 10.0, 6.0, 30.0, 31.0])

    def total(theta):
        return clv._bgnbd_log_likelihood_terms(*np.exp(theta), x, t_x, T)[0].sum()

    theta = np.log([0.7, 3.0, 1.3, 2.2])
    analytic = clv._bgnbd_log_likelihood_terms(*np.exp(theta), x, t_x, T)[1].sum(axis=1)
    numeric = optimize.approx_fprime(theta, total, 1e-7)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


def test_bgnbd_p_alive_hand_values():
    params = clv.BgNbdParams(r=1.0, alpha=2.0, a=0.5, b=1.5)
    # x = 2, t_x = 2, T = 6: odds = 0.5 / 2.5 * (8 / 4)^3 = 1.6, so P(alive) = 1 / 2.6.
    assert float(clv.bgnbd_p_alive(params, 2, 2.0, 6.0)) == pytest.approx(1 / 2.6, rel=1e-12)
    assert clv.bgnbd_p_alive(params, [0, 0], [0.0, 0.0], [1.0, 500.0]).tolist() == [1.0, 1.0]
    assert float(clv.bgnbd_p_alive(params, 3, 6.0, 6.0)) == pytest.approx(1 / (1 + 0.5 / 3.5), rel=1e-12)


def _direct_expected_purchases(params, t, x, t_x, T):
    """FHL eq. 10 written literally; fine for small x, overflows for large x."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hypergeometric = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hypergeometric)
    dropout_odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    return numerator / (1 + dropout_odds)


@pytest.mark.parametrize("x, t_x, T", [(0, 0.0, 10.0), (1, 3.0, 10.0), (5, 20.0, 25.0), (20, 30.0, 30.0)])
@pytest.mark.parametrize("a", [0.6, 2.5])
def test_bgnbd_stable_expectation_equals_literal_formula(x, t_x, T, a):
    params = clv.BgNbdParams(r=0.9, alpha=5.0, a=a, b=3.0)
    stable = float(clv.bgnbd_expected_purchases(params, 13.0, x, t_x, T))
    assert stable == pytest.approx(_direct_expected_purchases(params, 13.0, x, t_x, T), rel=1e-9)


def test_bgnbd_expectation_stays_finite_for_heavy_buyers():
    params = clv.BgNbdParams(r=0.9, alpha=5.0, a=0.7, b=3.0)
    x = np.array([10.0, 100.0, 1_000.0, 10_000.0, 100_000.0])
    expected = clv.bgnbd_expected_purchases(params, 10.0, x, 50.0, 50.0)
    assert np.isfinite(expected).all()
    assert (np.diff(expected) > 0).all()
    # A buyer this heavy is surely alive with rate near x/T; dropout trims the next 10 periods slightly.
    assert expected[-1] == pytest.approx(100_000 / 55 * 10, rel=0.1)
    ll = clv.bgnbd_log_likelihood(params, x, np.full(5, 50.0), np.full(5, 50.0))
    assert np.isfinite(ll)


@pytest.mark.parametrize(
    "a, b, r", [(0.793, 2.426, 0.243), (2.5, 3.0, 0.9), (0.01, 50.0, 0.2), (50.0, 0.01, 2.0)]
)
def test_quadrature_fallback_agrees_with_closed_form(a, b, r):
    x = np.array([0.0, 1.0, 7.0, 100.0, 100.0])
    scaled_t = np.array([0.8, 0.9, 0.01, 0.8, 4.0])
    closed_form = clv._expected_purchases_if_alive_closed_form(a, b, r, x, scaled_t / (1.0 + scaled_t))
    quadrature = clv._expected_purchases_if_alive_by_quadrature(a, b, r, x, scaled_t)
    np.testing.assert_allclose(quadrature, closed_form, rtol=1e-6)


def test_bgnbd_expectation_survives_degenerate_fitted_parameters():
    # Parameters like these come out of fits on a handful of customers; scipy's 2F1 returns nan there.
    for params in (
        clv.BgNbdParams(r=0.558, alpha=0.564, a=9291.6, b=1.07e-4),
        clv.BgNbdParams(r=2.0, alpha=1.0, a=50.0, b=0.01),
        clv.BgNbdParams(r=1e-3, alpha=2.0, a=3e8, b=3e8),
    ):
        horizons = np.array([1.0, 4.0, 39.0, 200.0])
        for x, t_x, T in [(0, 0.0, 4.0), (1, 1.0, 4.0), (100, 4.0, 4.0)]:
            expected = clv.bgnbd_expected_purchases(params, horizons, x, t_x, T)
            assert np.isfinite(expected).all()
            assert (np.diff(expected) >= -1e-6 * expected[1:]).all()
            assert (expected <= (params.r + x) * horizons / (params.alpha + T)).all()
    # Over a long horizon an alive customer makes E[1/p] = (a+b+x-1)/(a-1) more purchases (geometric count),
    # and P(alive) = 1 / (1 + a/(b+x-1)) when t_x = T.
    nearly_sure_dropout = clv.BgNbdParams(r=2.0, alpha=1.0, a=50.0, b=0.01)
    by_hand = (50.0 + 0.01 + 100 - 1) / 49.0 / (1.0 + 50.0 / 99.01)
    expected = clv.bgnbd_expected_purchases(nearly_sure_dropout, 200.0, 100, 4.0, 4.0)
    assert float(expected) == pytest.approx(by_hand, rel=1e-6)


def test_bgnbd_expectation_is_continuous_through_a_equal_one():
    near = [clv.BgNbdParams(r=0.9, alpha=5.0, a=a, b=3.0) for a in (1.0 - 1e-4, 1.0, 1.0 + 1e-4)]
    values = [float(clv.bgnbd_expected_purchases(p, 20.0, 3, 8.0, 12.0)) for p in near]
    assert np.isfinite(values).all()
    assert values[1] == pytest.approx(0.5 * (values[0] + values[2]), rel=1e-6)


def test_new_customer_expectations():
    params = clv.BgNbdParams(r=0.9, alpha=5.0, a=0.7, b=3.0)
    assert float(clv.bgnbd_expected_purchases_new_customer(params, 0.0)) == 0.0
    # Just after acquisition everyone is alive and buys at the mean rate r / alpha.
    assert float(clv.bgnbd_expected_purchases_new_customer(params, 1e-6)) == pytest.approx(
        0.9 / 5.0 * 1e-6, 1e-4
    )
    literal = (0.7 + 3.0 - 1) / (0.7 - 1) * (1 - (5 / 25) ** 0.9 * special.hyp2f1(0.9, 3.0, 2.7, 20 / 25))
    assert float(clv.bgnbd_expected_purchases_new_customer(params, 20.0)) == pytest.approx(literal, rel=1e-10)
    assert float(clv.bgnbd_probability_no_purchase(params, 0.0)) == 1.0
    assert float(clv.bgnbd_probability_no_purchase(params, 20.0)) == pytest.approx(0.2**0.9, rel=1e-12)


def test_bgnbd_fit_recovers_simulated_parameters():
    truth = clv.BgNbdParams(r=0.5, alpha=6.0, a=0.8, b=2.5)
    T = np.random.default_rng(7).uniform(4.0, 52.0, 30_000)
    fit = clv.fit_bgnbd(clv.simulate_bgnbd_summary(truth, T, seed=11))
    assert fit.converged
    assert fit.params.r == pytest.approx(truth.r, rel=0.1)
    assert fit.params.alpha == pytest.approx(truth.alpha, rel=0.1)
    assert fit.params.a == pytest.approx(truth.a, rel=0.2)
    assert fit.params.b == pytest.approx(truth.b, rel=0.2)


def test_fit_rejects_bad_input():
    summary = pd.DataFrame({"frequency": [1], "recency": [5.0], "T": [4.0]})
    with pytest.raises(ValueError, match="recency"):
        clv.fit_bgnbd(summary)
    with pytest.raises(ValueError, match="method"):
        clv.fit_bgnbd(pd.DataFrame({"frequency": [1], "recency": [3.0], "T": [4.0]}), method="BFGS")
    with pytest.raises(ValueError, match="empty"):
        clv.fit_bgnbd(summary.iloc[0:0])


@settings(max_examples=60, deadline=None)
@given(
    x=st.integers(min_value=1, max_value=200),
    t_x=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=100.0),
    more=st.floats(min_value=0.01, max_value=100.0),
)
def test_p_alive_falls_as_silence_grows(x, t_x, extra, more):
    params = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    T = t_x + extra
    earlier, later = clv.bgnbd_p_alive(params, [x, x], [t_x, t_x], [T, T + more])
    assert later <= earlier
    assert later < earlier or earlier < 1e-300


@settings(max_examples=60, deadline=None)
@given(
    x=st.integers(min_value=1, max_value=200),
    t_x=st.floats(min_value=0.0, max_value=50.0),
    later_by=st.floats(min_value=0.01, max_value=50.0),
    t=st.floats(min_value=0.1, max_value=200.0),
)
def test_later_last_purchase_means_more_alive_and_more_purchases(x, t_x, later_by, t):
    params = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    T = 100.0
    recencies = [t_x, t_x + later_by]
    p_alive = clv.bgnbd_p_alive(params, [x, x], recencies, [T, T])
    expected = clv.bgnbd_expected_purchases(params, t, [x, x], recencies, [T, T])
    assert p_alive[1] >= p_alive[0]
    assert expected[1] >= expected[0]
    assert 0.0 <= p_alive[0] <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    x=st.integers(min_value=0, max_value=100),
    recency_share=st.floats(min_value=0.0, max_value=1.0),
    T=st.floats(min_value=0.0, max_value=100.0),
    t=st.floats(min_value=0.0, max_value=100.0),
    dt=st.floats(min_value=0.01, max_value=100.0),
)
def test_expected_purchases_grow_with_the_horizon(x, recency_share, T, t, dt):
    params = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
    t_x = recency_share * T if x > 0 else 0.0
    shorter, longer = clv.bgnbd_expected_purchases(params, [t, t + dt], x, t_x, T)
    assert 0.0 <= shorter <= longer


# Gamma-Gamma


def test_gamma_gamma_log_likelihood_matches_hand_formula():
    p, q, gamma = 3.0, 2.5, 20.0
    customers = [(1, 12.0), (4, 30.5), (10, 7.25)]
    expected = 0.0
    for x, z in customers:
        expected += (
            math.lgamma(p * x + q)
            - math.lgamma(p * x)
            - math.lgamma(q)
            + q * math.log(gamma)
            + (p * x - 1) * math.log(z)
            + p * x * math.log(x)
            - (p * x + q) * math.log(gamma + x * z)
        )
    x, z = zip(*customers, strict=True)
    log_likelihood = clv.gamma_gamma_log_likelihood(clv.GammaGammaParams(p, q, gamma), x, z)
    assert log_likelihood == pytest.approx(expected, rel=1e-12)


def test_gamma_gamma_density_integrates_to_one():
    params = clv.GammaGammaParams(p=2.0, q=3.0, gamma=10.0)

    def density(z):
        return math.exp(clv.gamma_gamma_log_likelihood(params, [3], [z]))

    total, _ = __import__("scipy").integrate.quad(density, 0, np.inf)
    assert total == pytest.approx(1.0, abs=1e-8)


def test_gamma_gamma_gradient_matches_finite_differences():
    x = np.array([1.0, 2.0, 5.0, 30.0])
    z = np.array([10.0, 55.5, 20.0, 31.0])

    def total(theta):
        return clv._gamma_gamma_log_likelihood_terms(*np.exp(theta), x, z)[0].sum()

    theta = np.log([4.0, 3.0, 12.0])
    analytic = clv._gamma_gamma_log_likelihood_terms(*np.exp(theta), x, z)[1].sum(axis=1)
    np.testing.assert_allclose(analytic, optimize.approx_fprime(theta, total, 1e-7), rtol=1e-5, atol=1e-5)


def test_gamma_gamma_expected_value_hand_values():
    params = clv.GammaGammaParams(p=6.0, q=4.0, gamma=15.0)
    values = clv.gamma_gamma_expected_value(params, [2, 1, 0], [40.0, 10.0, 0.0])
    # p(gamma + x z) / (p x + q - 1): 6 * 95 / 15, 6 * 25 / 9, and the population mean 6 * 15 / 3.
    np.testing.assert_allclose(values, [38.0, 150 / 9, 30.0], rtol=1e-12)
    with pytest.raises(ValueError, match="infinite"):
        clv.gamma_gamma_expected_value(clv.GammaGammaParams(p=6.0, q=0.8, gamma=15.0), [0], [0.0])


def test_gamma_gamma_fit_uses_only_positive_repeat_spend_and_recovers_parameters():
    truth = clv.GammaGammaParams(p=4.0, q=3.0, gamma=20.0)
    frequency = np.random.default_rng(3).integers(0, 12, 20_000)
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "monetary_value": clv.simulate_gamma_gamma_mean_spend(truth, frequency, seed=5),
        }
    )
    fit = clv.fit_gamma_gamma(summary)
    assert fit.converged
    assert fit.n_customers == int((frequency > 0).sum())
    assert fit.params.p == pytest.approx(truth.p, rel=0.1)
    assert fit.params.q == pytest.approx(truth.q, rel=0.15)
    assert fit.params.gamma == pytest.approx(truth.gamma, rel=0.2)
    with pytest.raises(ValueError, match="no customer"):
        clv.fit_gamma_gamma(pd.DataFrame({"frequency": [0, 2], "monetary_value": [0.0, -5.0]}))


# Lifetime value, churn bands, scoring and backtest mechanics

BGNBD = clv.BgNbdParams(r=0.8, alpha=4.0, a=0.9, b=2.0)
GAMMA_GAMMA = clv.GammaGammaParams(p=6.0, q=4.0, gamma=15.0)


def test_clv_without_discount_is_purchases_times_value():
    value = clv.customer_lifetime_value(BGNBD, GAMMA_GAMMA, [2], [5.0], [8.0], [40.0], horizon=26.0)
    purchases = clv.bgnbd_expected_purchases(BGNBD, 26.0, 2, 5.0, 8.0)
    assert value == pytest.approx(purchases * 38.0, rel=1e-12)


def test_clv_discounts_each_step_to_its_end():
    args = (BGNBD, GAMMA_GAMMA, 2, 5.0, 8.0, 40.0)
    one_step = clv.customer_lifetime_value(*args, horizon=10.0, discount_rate=0.01, step=10.0)
    purchases_10 = float(clv.bgnbd_expected_purchases(BGNBD, 10.0, 2, 5.0, 8.0))
    assert float(one_step) == pytest.approx(purchases_10 * 38.0 / 1.01**10, rel=1e-12)
    two_steps = clv.customer_lifetime_value(*args, horizon=10.0, discount_rate=0.01, step=6.0)
    purchases_6 = float(clv.bgnbd_expected_purchases(BGNBD, 6.0, 2, 5.0, 8.0))
    by_hand = (purchases_6 / 1.01**6 + (purchases_10 - purchases_6) / 1.01**10) * 38.0
    assert float(two_steps) == pytest.approx(by_hand, rel=1e-12)
    undiscounted = clv.customer_lifetime_value(*args, horizon=10.0)
    assert float(one_step) < float(two_steps) < float(undiscounted)


def test_churn_risk_bands_with_default_and_custom_cut_points():
    risk = pd.Series([0.0, 0.29, 0.3, 0.5, 0.7, 1.0], index=list("abcdef"))
    bands = clv.churn_risk_band(risk)
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert list(bands.index) == list("abcdef")
    assert clv.churn_risk_band([0.1, 0.2, 0.95], cut_points=(0.15, 0.9)).tolist() == ["low", "medium", "high"]
    with pytest.raises(ValueError, match="cut points"):
        clv.churn_risk_band([0.5], cut_points=(0.8, 0.2))


def test_score_customers_combines_everything_per_customer():
    summary = pd.DataFrame(
        {
            "customer_id": pd.array(["new", "loyal", "lapsed"], dtype="string"),
            "frequency": [0, 10, 3],
            "recency": [0.0, 39.0, 2.0],
            "T": [10.0, 40.0, 40.0],
            "monetary_value": [0.0, 25.0, 60.0],
        }
    )
    scores = clv.score_customers(summary, BGNBD, GAMMA_GAMMA, horizon=13.0).set_index("customer_id")
    assert scores.loc["new", "p_alive"] == 1.0
    np.testing.assert_allclose(scores["churn_risk"], 1.0 - scores["p_alive"])
    assert scores.loc["lapsed", "churn_risk_band"] == "high"
    assert scores.loc["loyal", "churn_risk_band"] == "low"
    np.testing.assert_allclose(
        scores["expected_value"], scores["expected_purchases"] * scores["expected_average_value"], rtol=1e-12
    )
    assert scores.loc["loyal", "expected_value"] > scores.loc["lapsed", "expected_value"]


def test_backtest_counts_holdout_transactions_per_calibration_customer():
    transactions = _transactions(
        [
            ("a", "2024-01-01", 1.0),
            ("a", "2024-01-15", 1.0),
            ("a", "2024-02-10 09:00", 1.0),
            ("a", "2024-02-10 19:00", 1.0),
            ("a", "2024-02-20", 1.0),
            ("a", "2024-04-01", 1.0),
            ("b", "2024-01-03", 1.0),
            ("b", "2024-01-04", 1.0),
            ("c", "2024-01-10", 1.0),
            ("c", "2024-02-01", 1.0),
            ("d", "2024-02-15", 1.0),
        ]
    )
    result = clv.backtest_bgnbd(transactions, "2024-01-31", "2024-02-28")
    per_customer = result.per_customer.set_index("customer_id")
    assert per_customer["actual"].to_dict() == {"a": 2, "b": 0, "c": 1}
    assert result.total_actual == 3
    assert result.holdout_periods == pytest.approx(4.0)
    error = per_customer["predicted"] - per_customer["actual"]
    assert result.mae == pytest.approx(error.abs().mean())
    assert result.rmse == pytest.approx(math.sqrt((error**2).mean()))
    assert result.total_predicted == pytest.approx(per_customer["predicted"].sum())
    with pytest.raises(ValueError, match="after"):
        clv.backtest_bgnbd(transactions, "2024-01-31", "2024-01-31")
