"""The one resource every Python asset uses: where the warehouse and landing files are, and which day it is."""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa

from orchestration.settings import DEV_PII_SALT, Settings, duckdb_memory_limit


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
        conn.execute(f"set memory_limit = '{duckdb_memory_limit()}'")
        conn.execute("set enable_progress_bar = false")
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


# Rows per batch when an asset streams a table: some tens of MB of pandas for the widest per-person frame.
DEFAULT_BATCH_SIZE = 100_000

# Integers and booleans as pandas' nullable types whatever a batch holds: every batch of a column then has one
# dtype, and an integer column with nulls stays an integer when written back (Arrow's default makes it float).
_NULLABLE_TYPES = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def iter_frames(
    conn: duckdb.DuckDBPyConnection, sql: str, batch_size: int = DEFAULT_BATCH_SIZE, params: list | None = None
) -> Iterator[pd.DataFrame]:
    """A query's rows as DataFrames of at most `batch_size` rows, streamed so memory does not grow with the table.

    Always yields at least one frame (an empty one with the query's columns when it has no rows), so whatever
    is computed and written per batch also exists for an empty input. The stream holds `conn` until it is read
    out: write through another cursor meanwhile (`batch_writer`).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    reader = conn.sql(sql, params=params).to_arrow_reader(batch_size)
    yielded = False
    for batch in reader:
        if batch.num_rows:
            yielded = True
            yield batch.to_pandas(types_mapper=_NULLABLE_TYPES.get)
    if not yielded:
        yield reader.schema.empty_table().to_pandas(types_mapper=_NULLABLE_TYPES.get)


def whole_groups(frames: Iterable[pd.DataFrame], key: str) -> Iterator[pd.DataFrame]:
    """Re-cut frames of rows sorted by `key` so that all rows of one key arrive in the same frame.

    The rows of the last key of a frame are held back and put in front of the next frame, so a frame holds at
    most one batch plus one key's rows.
    """
    carry: pd.DataFrame | None = None
    for frame in frames:
        if carry is not None:
            frame = pd.concat([carry, frame], ignore_index=True)
        if frame.empty:
            carry = frame
            continue
        keys = frame[key].to_numpy()
        last = keys == keys[-1]
        carry = frame[last]
        if not last.all():
            yield frame[~last].reset_index(drop=True)
    if carry is not None and not carry.empty:
        yield carry.reset_index(drop=True)


class BatchWriter:
    """Appends frames to warehouse tables on its own cursor; the first frame written to a table replaces it."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor
        self._started: set[str] = set()

    def append(self, table: str, frame: pd.DataFrame) -> None:
        self.cursor.register("batch_to_write", naive_utc(frame))
        try:
            if table in self._started:
                self.cursor.execute(f"insert into {table} by name select * from batch_to_write")
            else:
                self.cursor.execute(f"create schema if not exists {table.split('.')[0]}")
                self.cursor.execute(f"create or replace table {table} as select * from batch_to_write")
                self._started.add(table)
        finally:
            self.cursor.unregister("batch_to_write")


@contextmanager
def batch_writer(conn: duckdb.DuckDBPyConnection) -> Iterator[BatchWriter]:
    """Write tables a batch at a time in one transaction: on any error nothing is written, as with replace_table."""
    cursor = conn.cursor()
    cursor.begin()
    try:
        yield BatchWriter(cursor)
        cursor.commit()
    except BaseException:
        cursor.rollback()
        raise
    finally:
        cursor.close()


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
