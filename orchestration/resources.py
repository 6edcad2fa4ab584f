"""The one resource every Python asset uses: where the warehouse and landing files are, and which day it is."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pandas as pd

from orchestration.settings import DEV_PII_SALT, Settings


class WarehouseError(RuntimeError):
    """A warehouse problem explained in words an operator can act on."""


class HuaxiangResource(dg.ConfigurableResource):
    landing_dir: str
    warehouse_path: str
    timezone: str = "Asia/Shanghai"
    pii_salt: str = DEV_PII_SALT
    as_of: str = ""  # YYYY-MM-DD; empty means today in `timezone`

    @classmethod
    def from_settings(cls, settings: Settings) -> HuaxiangResource:
        return cls(
            landing_dir=str(settings.landing_dir),
            warehouse_path=str(settings.warehouse_path),
            timezone=settings.timezone,
            pii_salt=settings.pii_salt,
            as_of=settings.as_of.isoformat() if settings.as_of else "",
        )

    @property
    def settings(self) -> Settings:
        return Settings(
            landing_dir=Path(self.landing_dir),
            warehouse_path=Path(self.warehouse_path),
            timezone=self.timezone,
            pii_salt=self.pii_salt,
            as_of=date.fromisoformat(self.as_of) if self.as_of else None,
        )

    def as_of_date(self) -> date:
        return self.settings.as_of_date()

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection whose session clock is the business timezone (naive timestamps mean local time)."""
        path = Path(self.warehouse_path)
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = duckdb.connect(str(path), read_only=read_only)
        except (duckdb.IOException, OSError) as error:
            raise WarehouseError(describe_connect_error(path, error)) from error
        conn.execute(f"set TimeZone = '{ZoneInfo(self.timezone).key}'")
        try:
            yield conn
        except (duckdb.Error, OSError) as error:
            if not is_disk_full(error):
                raise
            raise WarehouseError(describe_disk_full(path, error)) from error
        finally:
            conn.close()


def naive_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """The warehouse stores UTC as naive timestamps; strip the zone pandas may carry."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Write a frame as `schema.table`, replacing what was there, in one statement."""
    schema = table.split(".")[0]
    conn.execute(f"create schema if not exists {schema}")
    conn.register("frame_to_write", naive_utc(frame))
    try:
        conn.execute(f"create or replace table {table} as select * from frame_to_write")
    finally:
        conn.unregister("frame_to_write")


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        conn.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
    )


def is_disk_full(error: BaseException) -> bool:
    """DuckDB reports ENOSPC only in its message text; Python I/O reports it as an errno."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return "no space left on device" in str(error).lower()


def describe_disk_full(path: Path, error: Exception) -> str:
    """Say what filled up, and that a re-run is safe: the write was rolled back, no table is half-written."""
    return (
        f"The disk holding the warehouse {path} is full. The write that hit it was rolled back, so no table "
        f"is half-written: free space (or move the warehouse with --warehouse / HUAXIANG_WAREHOUSE) and run "
        f"again. DuckDB said: {error}"
    )


def describe_connect_error(path: Path, error: Exception) -> str:
    """Turn DuckDB's lock and permission errors into a message that says what to do."""
    text = str(error)
    if "lock" in text.lower():
        return (
            f"The warehouse {path} is open for writing by another process (another `huaxiang run` or "
            f"`dagster dev` materialization). Wait for it to finish, or point BI tools at the published "
            f"copy instead. DuckDB said: {text}"
        )
    if "read-only" in text.lower() or "permission" in text.lower():
        return f"Cannot write the warehouse {path}: the file or its folder is read-only. DuckDB said: {text}"
    return f"Cannot open the warehouse {path}: {text}"
