"""Real data through the landing contract: CDNOW purchases as an orders-only business.

Recency, frequency and monetary from the warehouse must equal an independent pandas computation on the
raw CDNOW file, to the cent and the day.
"""

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from orchestration.cli import run_pipeline
from orchestration.settings import Settings

pytestmark = pytest.mark.integration

CDNOW = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cdnow" / "CDNOW_master.txt"
AS_OF = date(1998, 6, 30)
ORDER_COLUMNS = (
    "order_id,user_id,phone,channel,store_id,status,ordered_at,paid_amount,discount_amount,coupon_code,updated_at"
)


def read_cdnow() -> pd.DataFrame:
    frame = pd.read_csv(CDNOW, sep=r"\s+", skiprows=1, names=["customer", "day", "cds", "dollars"], dtype=str)
    frame["ordered_on"] = pd.to_datetime(frame["day"], format="%Y%m%d").dt.date
    frame["cents"] = (frame["dollars"].astype(float) * 100).round().astype(int)
    return frame


def land_as_orders(frame: pd.DataFrame, landing: Path) -> None:
    """One order per CDNOW line; customer ids become CRM user ids; local noon on the purchase day."""
    (landing / "orders").mkdir(parents=True)
    timestamps = frame["ordered_on"].astype(str) + " 12:00:00"
    orders = pd.DataFrame(
        {
            "order_id": "cd" + pd.Series(range(len(frame))).astype(str),
            "user_id": "C" + frame["customer"],
            "phone": "",
            "channel": "web",
            "store_id": "",
            "status": "paid",
            "ordered_at": timestamps,
            "paid_amount": (frame["cents"] / 100).map("{:.2f}".format),
            "discount_amount": "0.00",
            "coupon_code": "",
            "updated_at": timestamps,
        }
    )
    orders.to_csv(landing / "orders" / "cdnow_orders.csv", index=False, columns=ORDER_COLUMNS.split(","))


def independent_rfm(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby("customer")
    return pd.DataFrame(
        {
            "crm_user_id": "C" + grouped.size().index,
            "frequency": grouped.size().to_numpy(),
            "monetary_cents": grouped["cents"].sum().to_numpy(),
            "recency_days": [(AS_OF - d).days for d in grouped["ordered_on"].max()],
        }
    )


@pytest.mark.skipif(not CDNOW.exists(), reason="shared datasets are not beside the repository")
def test_rfm_equals_an_independent_computation_on_cdnow(tmp_path):
    import duckdb

    frame = read_cdnow()
    land_as_orders(frame, tmp_path / "landing")
    settings = Settings(
        landing_dir=tmp_path / "landing",
        warehouse_path=tmp_path / "warehouse" / "huaxiang.duckdb",
        timezone="Asia/Shanghai",
        pii_salt="cdnow-test",
        as_of=AS_OF,
    )
    assert run_pipeline(settings).success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        got = conn.execute(
            """
            select p.crm_user_id, p.frequency, cast(round(p.monetary * 100) as bigint) as monetary_cents,
                   p.recency_days
            from marts.user_profile p
            """
        ).df()
    expected = independent_rfm(frame)
    assert len(got) == len(expected) == 23_570
    merged = expected.merge(got, on="crm_user_id", suffixes=("_expected", "_got"))
    assert len(merged) == 23_570
    for column in ("frequency", "monetary_cents", "recency_days"):
        assert (merged[f"{column}_expected"] == merged[f"{column}_got"]).all(), column
