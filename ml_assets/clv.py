"""Churn and customer lifetime value: BG/NBD purchase counts plus Gamma-Gamma spend, fitted with scipy.

Models and formulas:
- BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", Marketing Science 24(2).
- Gamma-Gamma: Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value".

Time is measured in model periods of ``time_unit_days`` days (weeks by default); every ``t``, ``horizon``
and discount rate below is in those periods. Conventions (CDNOW): purchases of one customer on one
calendar day are one transaction; ``frequency`` (x) counts repeat transactions, so the first purchase is
the customer's birth and never counts; ``recency`` (t_x) is the time from first to last purchase; ``T`` is
the time from first purchase to the end of calibration.

Churn risk is ``1 - P(alive)``, banded as low (< 0.3), medium (0.3 to < 0.7) and high (>= 0.7) by default.
Lifetime value over a horizon is expected purchases x expected average spend; with a discount rate the
horizon is cut into steps and each step's expected purchases are discounted to the end of that step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special
from threadpoolctl import threadpool_limits

SUMMARY_COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value"]
CHURN_BANDS = ("low", "medium", "high")
DEFAULT_CHURN_CUT_POINTS = (0.3, 0.7)
# Log-parameters stay inside exp(+-20): wide enough for any real data, narrow enough to never overflow.
_LOG_PARAMETER_BOUND = 20.0
_NEAR_ONE = 1e-6
_QUADRATURE_NODES = 256


@dataclass(frozen=True)
class BgNbdParams:
    """Purchase rate ~ Gamma(shape r, rate alpha); dropout probability after each purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class BgNbdFit:
    """A fitted BG/NBD model with the evidence needed to trust it (likelihood and convergence)."""

    params: BgNbdParams
    log_likelihood: float
    converged: bool
    iterations: int
    n_customers: int
    message: str


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per transaction ~ Gamma(shape p, rate nu); nu across customers ~ Gamma(shape q, rate gamma)."""

    p: float
    q: float
    gamma: float


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma model with the evidence needed to trust it (likelihood and convergence)."""

    params: GammaGammaParams
    log_likelihood: float
    converged: bool
    iterations: int
    n_customers: int
    message: str


@dataclass(frozen=True)
class BacktestResult:
    """Holdout accuracy of BG/NBD: per-customer predicted vs actual purchases plus aggregate errors."""

    fit: BgNbdFit
    per_customer: pd.DataFrame
    holdout_periods: float
    mae: float
    rmse: float
    total_predicted: float
    total_actual: int
    correlation: float


def _as_day(moment) -> pd.Timestamp:
    """Reduce a date or timestamp to its calendar day as naive local wall time, so comparisons are by day."""
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_localize(None)
    return stamp.normalize()


def _purchase_days(transactions: pd.DataFrame) -> pd.DataFrame:
    """Merge each customer's same-day purchases into one transaction, as the CDNOW convention does."""
    missing = {"customer_id", "occurred_at", "amount"} - set(transactions.columns)
    if missing:
        raise ValueError(f"transactions lack columns {sorted(missing)}")
    for column in ("customer_id", "occurred_at", "amount"):
        if transactions[column].isna().any():
            raise ValueError(f"transactions.{column} has missing values; clean them upstream")
    occurred_at = pd.to_datetime(transactions["occurred_at"], format="ISO8601")
    if occurred_at.dt.tz is not None:
        occurred_at = occurred_at.dt.tz_localize(None)
    days = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].to_numpy(),
            "day": occurred_at.dt.normalize().to_numpy(),
            "amount": pd.to_numeric(transactions["amount"]).astype("float64").to_numpy(),
        }
    )
    return days.groupby(["customer_id", "day"], as_index=False, sort=True)["amount"].sum()


def _summarise_days(days: pd.DataFrame, end: pd.Timestamp, time_unit_days: float) -> pd.DataFrame:
    """Turn merged purchase days (none after ``end``) into one (x, t_x, T, mean repeat spend) row each."""
    per_customer = days.groupby("customer_id", sort=True)
    first_day = per_customer["day"].transform("min")
    is_repeat = days["day"] > first_day
    repeat_amount = days["amount"].where(is_repeat, 0.0)
    summary = pd.DataFrame(
        {
            "first_day": per_customer["day"].min(),
            "last_day": per_customer["day"].max(),
            "frequency": is_repeat.groupby(days["customer_id"], sort=True).sum().astype("int64"),
            "repeat_amount": repeat_amount.groupby(days["customer_id"], sort=True).sum(),
        }
    )
    unit = pd.Timedelta(days=time_unit_days)
    summary["recency"] = (summary["last_day"] - summary["first_day"]) / unit
    summary["T"] = (end - summary["first_day"]) / unit
    repeaters = summary["frequency"] > 0
    summary["monetary_value"] = 0.0
    summary.loc[repeaters, "monetary_value"] = (
        summary.loc[repeaters, "repeat_amount"] / summary.loc[repeaters, "frequency"]
    )
    return summary.rename_axis("customer_id").reset_index()[SUMMARY_COLUMNS]


def rfm_summary(
    transactions: pd.DataFrame,
    calibration_end,
    time_unit_days: float = 7.0,
    observation_start=None,
) -> pd.DataFrame:
    """Collapse a purchase log into the per-customer (x, t_x, T, mean spend) summary the models are fitted on.

    Only purchases on days from ``observation_start`` (when given; earlier purchases are ignored, so a
    customer's first purchase is the first one on or after it) through ``calibration_end`` (inclusive,
    compared by calendar day) count. Time-zone-aware timestamps are compared by their own local day:
    convert them to the business time zone first. ``monetary_value`` is the mean value of repeat
    transactions (same-day purchases summed), 0 for customers without one.
    """
    if time_unit_days <= 0:
        raise ValueError("time_unit_days must be positive")
    days = _purchase_days(transactions)
    end = _as_day(calibration_end)
    keep = days["day"] <= end
    if observation_start is not None:
        keep &= days["day"] >= _as_day(observation_start)
    return _summarise_days(days.loc[keep].reset_index(drop=True), end, time_unit_days)


def _as_float_array(values) -> np.ndarray:
    """Accept Series, lists or scalars alike so the model functions stay DataFrame-agnostic."""
    return np.asarray(values, dtype="float64")


def _bgnbd_log_likelihood_terms(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log-likelihood and its gradient in (log r, log alpha, log a, log b), FHL (2005) eq. 6."""
    has_repeat = x > 0
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    # x - 1 is clipped at 0 so that customers without repeat purchases keep every term finite.
    x_minus_one = np.where(has_repeat, x - 1.0, 0.0)
    # log[B(a+1, b+x-1) / (a B(a, b))], shared by both branches; gammaln is far cheaper than betaln.
    shared = (
        special.gammaln(b + x_minus_one)
        - special.gammaln(a + b + x)
        + (special.gammaln(a + b) - special.gammaln(b))
    )
    # Still alive at T: B(a, b+x)/B(a, b) * (alpha + T)^-(r+x).
    log_alive = shared + np.log(np.where(has_repeat, b + x_minus_one, 1.0)) - (r + x) * np.log(alpha + T)
    # Dropped out right after the last purchase: B(a+1, b+x-1)/B(a, b) * (alpha + t_x)^-(r+x).
    log_dropped = np.where(has_repeat, shared + np.log(a) - (r + x) * np.log(alpha + t_x), -np.inf)
    log_total = np.logaddexp(log_alive, log_dropped)
    weight_alive = np.exp(log_alive - log_total)
    weight_dropped = 1.0 - weight_alive

    psi = special.digamma
    psi_ab = psi(a + b)
    psi_abx = psi(a + b + x)
    d_r = (
        psi(r + x)
        - psi(r)
        + np.log(alpha)
        - weight_alive * np.log(alpha + T)
        - weight_dropped * np.log(alpha + t_x)
    )
    d_alpha = r / alpha - (r + x) * (weight_alive / (alpha + T) + weight_dropped / (alpha + t_x))
    d_a = weight_alive * (psi_ab - psi_abx) + weight_dropped * (psi(a + 1.0) - psi(a) + psi_ab - psi_abx)
    d_b = weight_alive * (psi(b + x) - psi_abx - psi(b) + psi_ab) + weight_dropped * (
        psi(b + x_minus_one) - psi_abx - psi(b) + psi_ab
    )
    gradient = np.stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return common + log_total, gradient


def bgnbd_log_likelihood(params: BgNbdParams, frequency, recency, T) -> float:
    """Total BG/NBD log-likelihood of a customer summary, to compare fits and check published values."""
    terms, _ = _bgnbd_log_likelihood_terms(
        params.r,
        params.alpha,
        params.a,
        params.b,
        _as_float_array(frequency),
        _as_float_array(recency),
        _as_float_array(T),
    )
    return float(terms.sum())


def _distinct_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse identical customers into one weighted row: day-granular data repeats, so fits run faster."""
    # pandas hashes the rows; np.unique(axis=0) sorts them and was about 15x slower on 1M customers.
    counts = pd.DataFrame(dict(enumerate(columns))).value_counts(sort=False)
    distinct = [counts.index.get_level_values(i).to_numpy(dtype="float64") for i in range(len(columns))]
    return distinct, counts.to_numpy(dtype="float64")


def _maximise(negative_log_likelihood, start: np.ndarray, method: str, max_iterations: int):
    """Minimise a negative log-likelihood over bounded log-parameters with the chosen scipy method."""
    bounds = [(-_LOG_PARAMETER_BOUND, _LOG_PARAMETER_BOUND)] * len(start)
    if method not in ("L-BFGS-B", "Nelder-Mead"):
        raise ValueError(f"method must be 'L-BFGS-B' or 'Nelder-Mead', not {method!r}")
    # A 3-4 parameter problem gains nothing from threaded BLAS; on a busy machine the idle threads'
    # spin-waiting made each fit several times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        if method == "L-BFGS-B":
            return optimize.minimize(
                negative_log_likelihood,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": max_iterations, "ftol": 1e-13, "gtol": 1e-8},
            )
        return optimize.minimize(
            lambda theta: negative_log_likelihood(theta)[0],
            start,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": max_iterations, "xatol": 1e-8, "fatol": 1e-8, "adaptive": True},
        )


def _validate_summary(summary: pd.DataFrame, columns: Sequence[str]) -> None:
    """Fail early on summaries that would make the likelihood meaningless rather than fit nonsense."""
    missing = set(columns) - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks columns {sorted(missing)}")
    if len(summary) == 0:
        raise ValueError("cannot fit on an empty summary")
    if summary[list(columns)].isna().any().any():
        raise ValueError("summary has missing values")


def fit_bgnbd(
    summary: pd.DataFrame,
    method: str = "L-BFGS-B",
    initial: BgNbdParams | None = None,
    max_iterations: int = 2000,
) -> BgNbdFit:
    """Fit BG/NBD by maximum likelihood on log-parameters so every estimate stays positive.

    L-BFGS-B (default) uses the analytic gradient; Nelder-Mead is derivative-free and slower.
    ``converged`` is scipy's success flag; check it before trusting the parameters.
    """
    _validate_summary(summary, ["frequency", "recency", "T"])
    x, t_x, T = (summary[c].to_numpy(dtype="float64") for c in ("frequency", "recency", "T"))
    if (x < 0).any() or (t_x < 0).any() or (t_x > T + 1e-9).any():
        raise ValueError("need frequency >= 0 and 0 <= recency <= T")
    (x, t_x, T), weights = _distinct_rows(x, t_x, T)

    def negative_log_likelihood(theta: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(theta)
        terms, gradient = _bgnbd_log_likelihood_terms(r, alpha, a, b, x, t_x, T)
        return -float((weights * terms).sum()), -(gradient * weights).sum(axis=1)

    start = initial or BgNbdParams(
        r=1.0, alpha=max(float(np.average(T, weights=weights)), 1e-3), a=1.0, b=1.0
    )
    theta0 = np.log([start.r, start.alpha, start.a, start.b])
    result = _maximise(negative_log_likelihood, theta0, method, max_iterations)
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    return BgNbdFit(
        params=BgNbdParams(r=r, alpha=alpha, a=a, b=b),
        log_likelihood=-float(result.fun),
        converged=bool(result.success),
        iterations=int(result.nit),
        n_customers=int(weights.sum()),
        message=str(result.message),
    )


def _log_dropout_odds(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """log of a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x): the odds a repeat buyer has already dropped out."""
    has_repeat = x > 0
    b_plus = np.where(has_repeat, params.b + x - 1.0, 1.0)
    log_odds = (
        np.log(params.a)
        - np.log(b_plus)
        + (params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + t_x))
    )
    return np.where(has_repeat, log_odds, -np.inf)


def bgnbd_p_alive(params: BgNbdParams, frequency, recency, T) -> np.ndarray:
    """P(still active at T | x, t_x, T), FHL (2005) eq. 13; customers without repeat purchases are alive."""
    x, t_x, T = _as_float_array(frequency), _as_float_array(recency), _as_float_array(T)
    return special.expit(-_log_dropout_odds(params, x, t_x, T))


def _expected_purchases_if_alive_closed_form(a: float, b: float, r: float, x, z) -> np.ndarray:
    """(a+b+x-1)/(a-1) * [1 - (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)] with z = t/(alpha+T+t).

    Euler's transformation turns (1-z)^(r+x) 2F1(r+x, b+x; c; z) into (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z),
    whose first two arguments do not grow with x, so neither factor overflows for heavy buyers.
    """
    c = a + b + x - 1.0
    transformed = np.exp((a - 1.0) * np.log1p(-z)) * special.hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
    return c / (a - 1.0) * (1.0 - transformed)


def _expected_purchases_if_alive_by_quadrature(a: float, b: float, r: float, x, scaled_t) -> np.ndarray:
    """The same expectation as an integral over the dropout probability p, for where 2F1 breaks down.

    Alive with data (x, T), lambda ~ Gamma(r+x, alpha+T) and p ~ Beta(a, b+x), and the expected purchases
    are E_p[(1 - (1 + p t/(alpha+T))^-(r+x)) / p]. Gauss-Legendre nodes on the Beta quantile scale keep
    this accurate (about 1e-6 relative) however extreme a fit's parameters are.
    """
    nodes, weights = np.polynomial.legendre.leggauss(_QUADRATURE_NODES)
    quantiles, weights = (nodes + 1.0) / 2.0, weights / 2.0
    result = np.empty_like(scaled_t)
    for distinct_x in np.unique(x):
        same_x = x == distinct_x
        p = special.betaincinv(a, b + distinct_x, quantiles)
        shrink = -np.expm1(-(r + distinct_x) * np.log1p(np.outer(scaled_t[same_x], p))) / p
        result[same_x] = shrink @ weights
    return result


def _expected_purchases_if_alive(params: BgNbdParams, t, x, T) -> np.ndarray:
    """E[purchases in (T, T+t] | alive at T, x]: closed form where scipy's 2F1 is sound, else quadrature."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        if abs(a - 1.0) > _NEAR_ONE:
            closed_form = _expected_purchases_if_alive_closed_form(a, b, r, x, z)
        else:
            # The formula is 0/0 at a = 1; average the two sides, which is accurate to O(_NEAR_ONE^2).
            closed_form = 0.5 * (
                _expected_purchases_if_alive_closed_form(1.0 - _NEAR_ONE, b, r, x, z)
                + _expected_purchases_if_alive_closed_form(1.0 + _NEAR_ONE, b, r, x, z)
            )
    # Purchases cannot be negative nor exceed those of an immortal buyer, (r+x) t/(alpha+T).
    closed_form = np.array(closed_form, dtype="float64")
    ceiling = (r + x) * t / (alpha + T)
    broken = ~np.isfinite(closed_form) | (closed_form < 0.0) | (closed_form > ceiling * (1.0 + 1e-9))
    if broken.any():
        closed_form[broken] = _expected_purchases_if_alive_by_quadrature(
            a, b, r, x[broken], (t / (alpha + T))[broken]
        )
    return closed_form


def bgnbd_expected_purchases(params: BgNbdParams, t, frequency, recency, T) -> np.ndarray:
    """E[purchases in (T, T+t] | x, t_x, T], FHL (2005) eq. 10: the per-customer forecast."""
    t, x, t_x, T = np.broadcast_arrays(*(_as_float_array(v) for v in (t, frequency, recency, T)))
    if (t < 0).any():
        raise ValueError("t must be non-negative")
    if_alive = _expected_purchases_if_alive(params, t, x, T)
    return if_alive * bgnbd_p_alive(params, x, t_x, T)


def bgnbd_expected_purchases_new_customer(params: BgNbdParams, t) -> np.ndarray:
    """E[X(t)] for a customer acquired at time 0, FHL (2005) eq. 9: forecasts for cohorts not yet seen.

    It is the conditional expectation at x = t_x = T = 0, so it shares that numerically stable form.
    """
    t = _as_float_array(t)
    zero = np.zeros_like(t)
    return bgnbd_expected_purchases(params, t, zero, zero, zero)


def bgnbd_probability_no_purchase(params: BgNbdParams, t) -> np.ndarray:
    """P(no repeat purchase in (0, t]) for a new customer, (alpha/(alpha+t))^r: FHL (2005) eq. 8."""
    t = _as_float_array(t)
    return np.exp(params.r * (np.log(params.alpha) - np.log(params.alpha + t)))


def _gamma_gamma_log_likelihood_terms(
    p: float, q: float, gamma: float, x: np.ndarray, mean_spend: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-customer log density of mean spend and its gradient in (log p, log q, log gamma).

    f(z|x) = Gamma(px+q)/(Gamma(px)Gamma(q)) * gamma^q * z^(px-1) * x^(px) / (gamma + x z)^(px+q),
    the density of the mean of x spends (Fader & Hardie 2013, eq. 4).
    """
    px = p * x
    log_x = np.log(x)
    log_z = np.log(mean_spend)
    log_denominator = np.log(gamma + x * mean_spend)
    terms = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * log_z
        + px * log_x
        - (px + q) * log_denominator
    )
    psi_total = special.digamma(px + q)
    d_p = x * (psi_total - special.digamma(px) + log_z + log_x - log_denominator)
    d_q = psi_total - special.digamma(q) + np.log(gamma) - log_denominator
    d_gamma = q / gamma - (px + q) / (gamma + x * mean_spend)
    return terms, np.stack([d_p * p, d_q * q, d_gamma * gamma])


def _repeat_buyers(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Gamma-Gamma only learns from customers with a positive mean spend over at least one repeat purchase."""
    _validate_summary(summary, ["frequency", "monetary_value"])
    x = summary["frequency"].to_numpy(dtype="float64")
    mean_spend = summary["monetary_value"].to_numpy(dtype="float64")
    usable = (x > 0) & (mean_spend > 0)
    if not usable.any():
        raise ValueError("no customer has a repeat purchase with positive spend")
    return x[usable], mean_spend[usable]


def gamma_gamma_log_likelihood(params: GammaGammaParams, frequency, monetary_value) -> float:
    """Total Gamma-Gamma log-likelihood over customers with x > 0, to compare fits and published values."""
    x, mean_spend = _as_float_array(frequency), _as_float_array(monetary_value)
    if (x <= 0).any() or (mean_spend <= 0).any():
        raise ValueError("the Gamma-Gamma likelihood needs frequency > 0 and monetary_value > 0")
    terms, _ = _gamma_gamma_log_likelihood_terms(params.p, params.q, params.gamma, x, mean_spend)
    return float(terms.sum())


def fit_gamma_gamma(
    summary: pd.DataFrame,
    method: str = "L-BFGS-B",
    initial: GammaGammaParams | None = None,
    max_iterations: int = 2000,
) -> GammaGammaFit:
    """Fit Gamma-Gamma by maximum likelihood on the repeat buyers' mean spend (log-parameterised).

    Customers with frequency 0 or non-positive monetary_value carry no spend information and are left
    out; ``n_customers`` says how many were used.
    """
    x, mean_spend = _repeat_buyers(summary)
    (x, mean_spend), weights = _distinct_rows(x, mean_spend)

    def negative_log_likelihood(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, gamma = np.exp(theta)
        terms, gradient = _gamma_gamma_log_likelihood_terms(p, q, gamma, x, mean_spend)
        return -float((weights * terms).sum()), -(gradient * weights).sum(axis=1)

    start = initial or GammaGammaParams(
        p=1.0, q=1.0, gamma=max(float(np.average(mean_spend, weights=weights)), 1e-3)
    )
    theta0 = np.log([start.p, start.q, start.gamma])
    result = _maximise(negative_log_likelihood, theta0, method, max_iterations)
    p, q, gamma = (float(v) for v in np.exp(result.x))
    return GammaGammaFit(
        params=GammaGammaParams(p=p, q=q, gamma=gamma),
        log_likelihood=-float(result.fun),
        converged=bool(result.success),
        iterations=int(result.nit),
        n_customers=int(weights.sum()),
        message=str(result.message),
    )


def gamma_gamma_expected_value(params: GammaGammaParams, frequency, monetary_value) -> np.ndarray:
    """E[spend per transaction | x, mean spend]: shrinks each customer's mean towards the population mean.

    Equals p(gamma + x z)/(px + q - 1) (Fader & Hardie 2013, eq. 5); for x = 0 it is the population mean
    p gamma/(q - 1), which only exists when q > 1.
    """
    x, mean_spend = _as_float_array(frequency), _as_float_array(monetary_value)
    denominator = params.p * x + params.q - 1.0
    if (denominator <= 0).any():
        raise ValueError("expected spend is infinite when p*frequency + q <= 1 (q <= 1 for new customers)")
    observed = np.where(x > 0, mean_spend, 0.0)
    return params.p * (params.gamma + x * observed) / denominator


def customer_lifetime_value(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    frequency,
    recency,
    T,
    monetary_value,
    horizon: float,
    discount_rate: float = 0.0,
    step: float = 1.0,
) -> np.ndarray:
    """Expected spend over the next ``horizon`` periods: expected purchases x expected value per purchase.

    Without discounting this is E[Y(horizon)] * E[M]. With ``discount_rate`` (per period) the horizon is
    cut into steps of ``step`` periods (the last one may be shorter); the purchases expected in each step
    are discounted by (1 + discount_rate)^-(end of step), i.e. as if paid at the step's end.
    """
    if horizon < 0 or step <= 0 or discount_rate <= -1:
        raise ValueError("need horizon >= 0, step > 0 and discount_rate > -1")
    x, t_x, T = _as_float_array(frequency), _as_float_array(recency), _as_float_array(T)
    value_per_purchase = gamma_gamma_expected_value(gamma_gamma, x, monetary_value)
    if discount_rate == 0.0:
        return bgnbd_expected_purchases(bgnbd, horizon, x, t_x, T) * value_per_purchase
    step_ends = np.append(np.arange(step, horizon, step), horizon)
    cumulative = np.stack([bgnbd_expected_purchases(bgnbd, end, x, t_x, T) for end in step_ends])
    per_step = np.diff(cumulative, axis=0, prepend=0.0)
    discount = (1.0 + discount_rate) ** -step_ends
    return (discount @ per_step) * value_per_purchase


def churn_risk_band(churn_risk, cut_points: tuple[float, float] = DEFAULT_CHURN_CUT_POINTS) -> pd.Series:
    """Band churn risk for marketers: low below the first cut point, high at or above the second."""
    low_to_medium, medium_to_high = cut_points
    if not 0.0 <= low_to_medium <= medium_to_high <= 1.0:
        raise ValueError("cut points must satisfy 0 <= low/medium <= medium/high <= 1")
    risk = _as_float_array(churn_risk)
    band_index = np.searchsorted([low_to_medium, medium_to_high], risk, side="right")
    index = churn_risk.index if isinstance(churn_risk, pd.Series) else None
    return pd.Series(np.asarray(CHURN_BANDS, dtype=object)[band_index], index=index, dtype="string")


def score_customers(
    summary: pd.DataFrame,
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    horizon: float = 52.0,
    discount_rate: float = 0.0,
    cut_points: tuple[float, float] = DEFAULT_CHURN_CUT_POINTS,
) -> pd.DataFrame:
    """Per-customer P(alive), churn risk and band, expected purchases, expected value and CLV in one frame."""
    _validate_summary(summary, SUMMARY_COLUMNS)
    x, t_x, T, mean_spend = (
        summary[c].to_numpy(dtype="float64") for c in ("frequency", "recency", "T", "monetary_value")
    )
    p_alive = bgnbd_p_alive(bgnbd, x, t_x, T)
    churn_risk = 1.0 - p_alive
    return pd.DataFrame(
        {
            "customer_id": summary["customer_id"].to_numpy(),
            "p_alive": p_alive,
            "churn_risk": churn_risk,
            "churn_risk_band": churn_risk_band(churn_risk, cut_points).to_numpy(),
            "expected_purchases": bgnbd_expected_purchases(bgnbd, horizon, x, t_x, T),
            "expected_average_value": gamma_gamma_expected_value(gamma_gamma, x, mean_spend),
            "expected_value": customer_lifetime_value(
                bgnbd, gamma_gamma, x, t_x, T, mean_spend, horizon, discount_rate
            ),
        },
        index=summary.index,
    )


def _holdout_counts(
    days: pd.DataFrame, calibration_end: pd.Timestamp, holdout_end: pd.Timestamp
) -> pd.Series:
    """Transactions (merged days) per customer strictly after calibration and up to the holdout end."""
    in_holdout = (days["day"] > calibration_end) & (days["day"] <= holdout_end)
    return days.loc[in_holdout].groupby("customer_id").size()


def backtest_bgnbd(
    transactions: pd.DataFrame,
    calibration_end,
    holdout_end,
    time_unit_days: float = 7.0,
    observation_start=None,
    method: str = "L-BFGS-B",
) -> BacktestResult:
    """Fit on purchases up to ``calibration_end``; compare forecasts with what happened up to ``holdout_end``.

    Only customers already acquired in calibration are scored (BG/NBD says nothing about the others).
    ``correlation`` is Pearson's between predicted and actual counts, NaN when either is constant.
    """
    end = _as_day(calibration_end)
    holdout = _as_day(holdout_end)
    if holdout <= end:
        raise ValueError("holdout_end must be after calibration_end")
    summary = rfm_summary(transactions, end, time_unit_days, observation_start)
    fit = fit_bgnbd(summary, method=method)
    holdout_periods = (holdout - end) / pd.Timedelta(days=time_unit_days)
    actual = _holdout_counts(_purchase_days(transactions), end, holdout)
    per_customer = summary[["customer_id", "frequency", "recency", "T"]].copy()
    per_customer["predicted"] = bgnbd_expected_purchases(
        fit.params, holdout_periods, summary["frequency"], summary["recency"], summary["T"]
    )
    per_customer["actual"] = per_customer["customer_id"].map(actual).fillna(0).astype("int64").to_numpy()
    error = per_customer["predicted"] - per_customer["actual"]
    predicted, observed = per_customer["predicted"].to_numpy(), per_customer["actual"].to_numpy("float64")
    constant = np.ptp(predicted) == 0 or np.ptp(observed) == 0
    return BacktestResult(
        fit=fit,
        per_customer=per_customer,
        holdout_periods=float(holdout_periods),
        mae=float(error.abs().mean()),
        rmse=float(np.sqrt((error**2).mean())),
        total_predicted=float(predicted.sum()),
        total_actual=int(observed.sum()),
        correlation=float("nan") if constant else float(np.corrcoef(predicted, observed)[0, 1]),
    )


def simulate_bgnbd_summary(params: BgNbdParams, T, seed: int | None = None) -> pd.DataFrame:
    """Draw (x, t_x, T) from the BG/NBD story, to check parameter recovery and benchmark at any scale.

    Repeat purchases follow a Poisson process until the customer drops out right after the J-th of them,
    J ~ Geometric(p); given n purchases in (0, T], the x-th purchase time is T times the x-th of n uniform
    order statistics, i.e. T * Beta(x, n - x + 1).
    """
    rng = np.random.default_rng(seed)
    T = _as_float_array(T)
    purchase_rate = rng.gamma(params.r, 1.0 / params.alpha, T.shape)
    dropout_probability = np.clip(rng.beta(params.a, params.b, T.shape), 1e-12, 1.0)
    purchases_if_immortal = rng.poisson(purchase_rate * T)
    purchases_before_dropout = rng.geometric(dropout_probability)
    x = np.minimum(purchases_if_immortal, purchases_before_dropout)
    has_repeat = x > 0
    order_statistic = rng.beta(np.maximum(x, 1), purchases_if_immortal - x + 1)
    return pd.DataFrame(
        {"frequency": x.astype("int64"), "recency": np.where(has_repeat, T * order_statistic, 0.0), "T": T}
    )


def simulate_gamma_gamma_mean_spend(
    params: GammaGammaParams, frequency, seed: int | None = None
) -> np.ndarray:
    """Draw each customer's mean spend over ``frequency`` purchases from the Gamma-Gamma story (0 if none)."""
    rng = np.random.default_rng(seed)
    x = _as_float_array(frequency)
    spend_rate = rng.gamma(params.q, 1.0 / params.gamma, x.shape)
    has_repeat = x > 0
    shape = np.where(has_repeat, params.p * x, 1.0)
    mean_spend = rng.gamma(shape, 1.0 / (spend_rate * np.where(has_repeat, x, 1.0)))
    return np.where(has_repeat, mean_spend, 0.0)
