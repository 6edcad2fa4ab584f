"""Where things live and which clock and key to use, read once from the environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_PII_SALT = "huaxiang-dev-salt-do-not-use-in-production"
# DuckDB's own default is 80% of RAM per process; with dbt and the Python assets each holding a database
# process, a bound makes large joins and window sorts spill to disk instead of growing the run past it.
DEFAULT_DUCKDB_MEMORY_LIMIT = "3GB"


def duckdb_memory_limit() -> str:
    """HUAXIANG_DUCKDB_MEMORY_LIMIT (e.g. 3GB, 512MB), checked so it can be written into a SET statement."""
    limit = os.environ.get("HUAXIANG_DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", limit.strip()):
        raise ValueError(f"HUAXIANG_DUCKDB_MEMORY_LIMIT={limit!r} is not a size such as 3GB or 512MB")
    return limit.strip()


@dataclass(frozen=True)
class Settings:
    landing_dir: Path
    warehouse_path: Path
    timezone: str
    pii_salt: str
    as_of: date | None

    @property
    def published_path(self) -> Path:
        """BI reads this copy, never the working warehouse, so a refresh never blocks or half-shows."""
        return self.warehouse_path.with_name(self.warehouse_path.stem + "_published.duckdb")

    @property
    def report_path(self) -> Path:
        return self.warehouse_path.parent / "report.html"

    def as_of_date(self) -> date:
        """Today in the business timezone unless a run fixes it."""
        return self.as_of or datetime.now(ZoneInfo(self.timezone)).date()

    def environment(self) -> dict[str, str]:
        """The variables dbt and child processes need to see the same settings."""
        return {
            "HUAXIANG_LANDING_DIR": str(self.landing_dir),
            "HUAXIANG_WAREHOUSE": str(self.warehouse_path),
            "HUAXIANG_TIMEZONE": self.timezone,
            "HUAXIANG_PII_SALT": self.pii_salt,
            "HUAXIANG_AS_OF": self.as_of.isoformat() if self.as_of else "",
        }


def load_settings() -> Settings:
    as_of = os.environ.get("HUAXIANG_AS_OF") or None
    timezone = os.environ.get("HUAXIANG_TIMEZONE", "Asia/Shanghai")
    ZoneInfo(timezone)  # fail early on a misspelt zone
    return Settings(
        landing_dir=Path(os.environ.get("HUAXIANG_LANDING_DIR", REPO_ROOT / "data" / "landing")).resolve(),
        warehouse_path=Path(
            os.environ.get("HUAXIANG_WAREHOUSE", REPO_ROOT / "data" / "warehouse" / "huaxiang.duckdb")
        ).resolve(),
        timezone=timezone,
        pii_salt=os.environ.get("HUAXIANG_PII_SALT", DEV_PII_SALT),
        as_of=date.fromisoformat(as_of) if as_of else None,
    )


def apply_settings(settings: Settings) -> None:
    """Export settings so dbt (which reads env vars) and Dagster resources agree."""
    os.environ.update(settings.environment())
