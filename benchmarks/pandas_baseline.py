"""The script a data analyst would write for the same features: read every file into pandas, concat, groupby.

Same definitions and the same naive identity as `benchmarks.lower_bound` (a person is `userId`, else
`anonymousId`; orders: `user_id`, else the guest's phone), so the two outputs can be compared row by row.
`pd.read_json(lines=True)` rejects a whole file for one truncated line, and almost every generated day file
holds one, so event lines are parsed one by one with `json.loads` and the bad ones counted and skipped:
exactly what an analyst ends up writing after the first traceback.

Usage: ``python -m benchmarks.pandas_baseline --landing DIR --as-of YYYY-MM-DD --out features.parquet``
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

SESSION_GAP = pd.Timedelta(minutes=30)
EVENT_FIELDS = ("messageId", "type", "event", "userId", "anonymousId", "timestamp")
ACTIVITY_TYPES = ("track", "page", "screen")


def read_event_file(path: Path) -> tuple[pd.DataFrame, int]:
    """One JSON Lines file (plain or gzip) as the columns the features need, and its unparsable line count."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows, bad = [], 0
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            properties = record.get("properties") or {}
            rows.append((*(record.get(f) for f in EVENT_FIELDS), properties.get("content_type")))
    return pd.DataFrame(rows, columns=[*EVENT_FIELDS, "content_type"]), bad


def read_events(landing: Path) -> tuple[pd.DataFrame, int]:
    """Every event file under `events/`, concatenated."""
    frames, bad = [], 0
    for path in sorted((landing / "events").rglob("*.jsonl*")):
        frame, bad_lines = read_event_file(path)
        frames.append(frame)
        bad += bad_lines
    return pd.concat(frames, ignore_index=True), bad


def clean_events(raw: pd.DataFrame, as_of: pd.Timestamp, timezone: str) -> pd.DataFrame:
    """Valid activity events up to the as-of day, deduplicated by messageId, with local time."""
    events = raw[raw["messageId"].notna() & raw["type"].isin(ACTIVITY_TYPES)].copy()
    events["person_id"] = events["userId"].fillna(events["anonymousId"])
    events["local_at"] = (
        pd.to_datetime(events["timestamp"], utc=True, errors="coerce", format="ISO8601")
        .dt.tz_convert(timezone)
        .dt.tz_localize(None)
    )
    events = events[events["person_id"].notna() & events["local_at"].notna()]
    events = events[events["local_at"].dt.normalize() <= as_of]
    return events.drop_duplicates("messageId")


def engagement_features(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Events, active days, sessions, time-of-day and content-type shares per person."""
    events = events.sort_values(["person_id", "local_at"])
    day = events["local_at"].dt.normalize()
    hour = events["local_at"].dt.hour
    gap = events.groupby("person_id")["local_at"].diff()
    is_content = events["event"] == "Content Viewed"
    flags = pd.DataFrame(
        {
            "person_id": events["person_id"],
            "day_30": day.where(day > as_of - pd.Timedelta(days=30)),
            "day_90": day.where(day > as_of - pd.Timedelta(days=90)),
            "session_start": (gap.isna() | (gap > SESSION_GAP)).astype(int),
            "morning": ((hour >= 5) & (hour < 11)).astype(float),
            "daytime": ((hour >= 11) & (hour < 18)).astype(float),
            "evening": ((hour >= 18) & (hour < 23)).astype(float),
            "late_night": ((hour >= 23) | (hour < 5)).astype(float),
            "content": is_content.astype(int),
            "article": (is_content & (events["content_type"] == "article")).astype(int),
            "video": (is_content & (events["content_type"] == "video")).astype(int),
            "live": (is_content & (events["content_type"] == "live")).astype(int),
        }
    )
    grouped = flags.groupby("person_id")
    features = pd.DataFrame(
        {
            "events": grouped.size(),
            "active_days_30": grouped["day_30"].nunique(),
            "active_days_90": grouped["day_90"].nunique(),
            "sessions": grouped["session_start"].sum(),
            "share_morning": grouped["morning"].mean(),
            "share_daytime": grouped["daytime"].mean(),
            "share_evening": grouped["evening"].mean(),
            "share_late_night": grouped["late_night"].mean(),
            "content_views": grouped["content"].sum(),
        }
    )
    views = features["content_views"].replace(0, np.nan)
    for content_type in ("article", "video", "live"):
        features[f"share_{content_type}"] = grouped[content_type].sum() / views
    return features


def read_orders(landing: Path) -> pd.DataFrame:
    """Every order snapshot file, all text (BOM stripped), concatenated."""
    frames = [
        pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        for path in sorted((landing / "orders").glob("*.csv"))
    ]
    return pd.concat(frames, ignore_index=True)


def rfm_features(orders: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Recency, frequency, monetary from each order's latest snapshot up to the as-of day, paid only."""
    orders = orders.assign(
        person_id=orders["user_id"].replace("", np.nan).fillna(orders["phone"].replace("", np.nan)),
        ordered_at=pd.to_datetime(orders["ordered_at"], errors="coerce", format="%Y-%m-%d %H:%M:%S"),
        updated_at=pd.to_datetime(orders["updated_at"], errors="coerce", format="%Y-%m-%d %H:%M:%S"),
        paid_amount=pd.to_numeric(orders["paid_amount"], errors="coerce"),
    ).dropna(subset=["ordered_at", "updated_at", "paid_amount"])
    orders = orders[
        (orders["updated_at"].dt.normalize() <= as_of) & (orders["ordered_at"].dt.normalize() <= as_of)
    ]
    latest = orders.sort_values("updated_at").drop_duplicates("order_id", keep="last")
    paid = latest[(latest["status"] == "paid") & latest["person_id"].notna()]
    grouped = paid.groupby("person_id")
    return pd.DataFrame(
        {
            "recency_days": (as_of - grouped["ordered_at"].max().dt.normalize()).dt.days,
            "frequency": grouped.size(),
            "monetary": grouped["paid_amount"].sum().round(2),
        }
    )


def person_features(landing: Path, as_of: str, timezone: str = "Asia/Shanghai") -> tuple[pd.DataFrame, int]:
    """RFM joined with engagement, one row per person, and the number of unparsable event lines skipped."""
    as_of_day = pd.Timestamp(as_of)
    raw_events, bad_lines = read_events(landing)
    engagement = engagement_features(clean_events(raw_events, as_of_day, timezone), as_of_day)
    rfm = rfm_features(read_orders(landing), as_of_day)
    features = rfm.join(engagement, how="outer")
    counts = ["frequency", "events", "active_days_30", "active_days_90", "sessions", "content_views"]
    features[counts] = features[counts].fillna(0).astype("int64")
    features["monetary"] = features["monetary"].fillna(0.0)
    return features.rename_axis("person_id").reset_index(), bad_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--as-of", dest="as_of", required=True)
    parser.add_argument("--timezone", default="Asia/Shanghai")
    parser.add_argument("--out", type=Path, help="write the features as Parquet here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    features, bad_lines = person_features(args.landing, args.as_of, args.timezone)
    print(
        f"pandas baseline: {len(features)} people in {time.perf_counter() - started:.2f}s "
        f"({bad_lines} unparsable event lines skipped)"
    )
    if args.out:
        features.to_parquet(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
