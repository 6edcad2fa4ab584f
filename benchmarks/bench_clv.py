"""Time BG/NBD + Gamma-Gamma fitting on CDNOW master (23,570 customers) and a synthetic 1M-customer summary.

Run from the repository root: ``python -m benchmarks.bench_clv`` (``--customers N`` to change the size).
Baselines measured in the same run: Nelder-Mead against the default gradient-based L-BFGS-B, and
continuous (all-distinct) recency against day-granular recency, which the fit collapses into weighted rows.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ml_assets import clv

CDNOW_MASTER = (
    Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cdnow" / "CDNOW_master.txt"
)
CDNOW_PARAMS = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
CDNOW_SPEND = clv.GammaGammaParams(p=6.25, q=3.74, gamma=15.44)


def timed(label: str, function, *args, **kwargs):
    """Run once, print wall and CPU time (CPU is steadier on a shared machine), and return the result."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"  {label:<52} {seconds:8.3f} s wall {cpu_seconds:8.3f} s CPU")
    return result, cpu_seconds


def describe(fit) -> str:
    """One line with the parameters and the evidence of convergence."""
    params = ", ".join(f"{name}={value:.4g}" for name, value in vars(fit.params).items())
    return f"{params}; LL={fit.log_likelihood:.1f}; converged={fit.converged}; iterations={fit.iterations}"


def load_cdnow_master(path: Path) -> pd.DataFrame:
    """CDNOW master log as (customer_id, occurred_at, amount)."""
    raw = pd.read_csv(path, sep=r"\s+", dtype={"customer_id": "string", "date": "string"})
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "occurred_at": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["dollar_value"],
        }
    )


def bench_cdnow_master(path: Path) -> None:
    """Fit both models on the full CDNOW log with the published calibration split."""
    transactions = load_cdnow_master(path)
    print(f"CDNOW master: {len(transactions):,} transactions")
    summary, _ = timed("rfm_summary", clv.rfm_summary, transactions, "1997-09-30")
    print(f"  {len(summary):,} customers, {int((summary['frequency'] > 0).sum()):,} repeat buyers")
    fit, lbfgs_seconds = timed("fit_bgnbd (L-BFGS-B, analytic gradient)", clv.fit_bgnbd, summary)
    print(f"    {describe(fit)}")
    slow_fit, nelder_seconds = timed(
        "fit_bgnbd (Nelder-Mead baseline)", clv.fit_bgnbd, summary, "Nelder-Mead"
    )
    print(
        f"    {describe(slow_fit)}; Nelder-Mead / L-BFGS-B CPU time = {nelder_seconds / lbfgs_seconds:.1f}x"
    )
    spend_fit, _ = timed("fit_gamma_gamma", clv.fit_gamma_gamma, summary)
    print(f"    {describe(spend_fit)}")
    timed(
        "score_customers (52-week CLV, 1%/week discount)",
        clv.score_customers,
        summary,
        fit.params,
        spend_fit.params,
        52.0,
        0.01,
    )
    backtest, _ = timed(
        "backtest_bgnbd (holdout to 1998-06-30)", clv.backtest_bgnbd, transactions, "1997-09-30", "1998-06-30"
    )
    print(
        f"    holdout purchases predicted {backtest.total_predicted:,.0f} "
        f"vs actual {backtest.total_actual:,}; MAE {backtest.mae:.3f}, RMSE {backtest.rmse:.3f}, "
        f"correlation {backtest.correlation:.3f}"
    )


def synthetic_summary(customers: int, seed: int) -> pd.DataFrame:
    """A 1-year cohort drawn from the CDNOW parameters, recency and T on whole days like warehouse data."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 365, customers) / 7.0
    summary = clv.simulate_bgnbd_summary(CDNOW_PARAMS, T, seed=seed + 1)
    summary["monetary_value"] = clv.simulate_gamma_gamma_mean_spend(
        CDNOW_SPEND, summary["frequency"], seed + 2
    )
    summary.insert(0, "customer_id", pd.array(np.arange(customers).astype(str), dtype="string"))
    return summary


def bench_synthetic(customers: int, seed: int) -> None:
    """Fit and score a synthetic summary the size of a large mini-program user base."""
    print(
        f"Synthetic summary: {customers:,} customers "
        "(true BG/NBD r, alpha, a, b = 0.243, 4.414, 0.793, 2.426)"
    )
    continuous = synthetic_summary(customers, seed)
    day_granular = continuous.assign(recency=np.round(continuous["recency"] * 7.0) / 7.0)
    distinct = len(day_granular[["frequency", "recency", "T"]].drop_duplicates())
    print(f"  day-granular data has {distinct:,} distinct (x, t_x, T) rows")
    fit, day_seconds = timed("fit_bgnbd, day-granular recency", clv.fit_bgnbd, day_granular)
    print(f"    {describe(fit)}")
    continuous_fit, continuous_seconds = timed(
        "fit_bgnbd, continuous recency (baseline)", clv.fit_bgnbd, continuous
    )
    print(
        f"    {describe(continuous_fit)}; continuous / day-granular CPU time = "
        f"{continuous_seconds / day_seconds:.1f}x"
    )
    spend_fit, _ = timed("fit_gamma_gamma", clv.fit_gamma_gamma, day_granular)
    print(f"    {describe(spend_fit)}")
    timed(
        "score_customers (52-week CLV, undiscounted)",
        clv.score_customers,
        day_granular,
        fit.params,
        spend_fit.params,
        52.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20050101)
    parser.add_argument("--cdnow-master", type=Path, default=CDNOW_MASTER)
    arguments = parser.parse_args()
    bench_cdnow_master(arguments.cdnow_master)
    bench_synthetic(arguments.customers, arguments.seed)


if __name__ == "__main__":
    main()
