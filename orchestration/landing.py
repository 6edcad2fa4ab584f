"""Ingest landed files into the `raw` schema: each file once, every record loaded, quarantined or counted.

Parsing and validation run inside DuckDB over the file's lines (registered as Arrow), so no value read
from data is ever interpolated into SQL, and the same code path scales from 10 to 10M records.
Timestamps are parsed once, here, by the same cast that validates them, and stored as UTC.
Phone numbers are replaced by their keyed hash before anything is written.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from orchestration.pii import hash_phone, mask_pii_sql

EVENT_TYPES = ("track", "page", "screen", "identify", "alias")
MAX_MESSAGE_ID_LENGTH = 128
MAX_RAW_RECORD_CHARS = 20_000
# Lines held in memory (as Python strings, Arrow and DuckDB's parse) per atomic batch: 1M peaked at 5.4 GB.
EVENT_BATCH_LINES = 250_000
CSV_BATCH_ROWS = 500_000
PII_TRAIT_KEYS = (
    "phone",
    "mobile",
    "name",
    "first_name",
    "last_name",
    "email",
    "address",
    "id_card",
    "id_number",
)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text | int | decimal | timestamp | date | bool | phone
    required: bool = False
    allowed: tuple[str, ...] = ()
    non_negative: bool = False
    # (column, value): this text column holds a phone number, to be hashed, when that column has that value
    phone_when: tuple[str, str] | None = None


@dataclass(frozen=True)
class CsvSource:
    folder: str
    columns: tuple[Column, ...]
    # (SQL condition over typed_<column> that makes a row bad, reason)
    row_rules: tuple[tuple[str, str], ...] = ()

    @property
    def table(self) -> str:
        return f"raw.{self.folder}"


CSV_SOURCES: dict[str, CsvSource] = {
    source.folder: source
    for source in (
        CsvSource(
            "users",
            (
                Column("user_id", required=True),
                Column("phone", "phone"),
                Column("unionid"),
                Column("gender", allowed=("M", "F", "U", "男", "女")),
                Column("birth_date", "date"),
                Column("province"),
                Column("city"),
                Column("registered_at", "timestamp"),
                Column("member_level"),
                Column("updated_at", "timestamp", required=True),
            ),
        ),
        CsvSource(
            "orders",
            (
                Column("order_id", required=True),
                Column("user_id"),
                Column("phone", "phone"),
                Column("channel"),
                Column("store_id"),
                Column("status", required=True, allowed=("paid", "refunded", "cancelled")),
                Column("ordered_at", "timestamp", required=True),
                Column("paid_amount", "decimal", required=True, non_negative=True),
                Column("discount_amount", "decimal", non_negative=True),
                Column("coupon_code"),
                Column("updated_at", "timestamp", required=True),
            ),
            row_rules=(
                ("typed_user_id is null and typed_phone is null", "order has neither user_id nor phone"),
            ),
        ),
        CsvSource(
            "order_items",
            (
                Column("order_id", required=True),
                Column("line_no", "int", required=True, non_negative=True),
                Column("product_id", required=True),
                Column("quantity", "int", required=True, non_negative=True),
                Column("unit_price", "decimal", required=True, non_negative=True),
            ),
        ),
        CsvSource(
            "products",
            (
                Column("product_id", required=True),
                Column("product_name"),
                Column("category"),
                Column("brand"),
                Column("list_price", "decimal", non_negative=True),
                Column("updated_at", "timestamp", required=True),
            ),
        ),
        CsvSource(
            "consents",
            (
                Column("user_id", required=True),
                Column("purpose", required=True, allowed=("profiling", "marketing", "personalization")),
                Column("granted", "bool", required=True),
                Column("recorded_at", "timestamp", required=True),
            ),
        ),
        CsvSource(
            "erasure_requests",
            (
                Column("request_id", required=True),
                Column(
                    "identifier_type",
                    required=True,
                    allowed=("user_id", "phone", "openid", "unionid", "anonymous_id"),
                ),
                Column("identifier_value", required=True, phone_when=("identifier_type", "phone")),
                Column("requested_at", "timestamp", required=True),
            ),
        ),
    )
}
LANDING_FOLDERS = ("events", *CSV_SOURCES)
csv.field_size_limit(64 * 1024 * 1024)  # the default 128 KiB would split a long field into a CSV error

_SQL_TYPES = {
    "text": "VARCHAR",
    "phone": "VARCHAR",
    "int": "BIGINT",
    "decimal": "DECIMAL(18,2)",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "bool": "BOOLEAN",
}
_LINEAGE_COLUMNS = "source_file VARCHAR NOT NULL, line_number INTEGER NOT NULL, file_seq INTEGER NOT NULL"

EVENTS_DDL = f"""
create table if not exists raw.events (
    message_id VARCHAR NOT NULL, event_type VARCHAR NOT NULL, event_name VARCHAR, page_name VARCHAR,
    user_id VARCHAR, anonymous_id VARCHAR, previous_id VARCHAR,
    occurred_at TIMESTAMP NOT NULL, timestamp_text VARCHAR NOT NULL,
    properties JSON, context JSON, traits JSON, traits_phone_hash VARCHAR,
    {_LINEAGE_COLUMNS}
)"""
MANIFEST_DDL = """
create table if not exists raw.landed_files (
    relative_path VARCHAR PRIMARY KEY, folder VARCHAR NOT NULL, size_bytes BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL, file_seq INTEGER NOT NULL, ingested_at TIMESTAMP NOT NULL,
    records_read BIGINT NOT NULL, records_loaded BIGINT NOT NULL,
    records_quarantined BIGINT NOT NULL, records_duplicate BIGINT NOT NULL, note VARCHAR
)"""
CHANGED_FILES_DDL = """
create table if not exists raw.changed_files (
    relative_path VARCHAR NOT NULL, ingested_sha256 VARCHAR NOT NULL, found_sha256 VARCHAR NOT NULL,
    found_size_bytes BIGINT NOT NULL, detected_at TIMESTAMP NOT NULL
)"""
QUARANTINE_DDL = """
create table if not exists quarantine.rejected_records (
    source_file VARCHAR NOT NULL, line_number INTEGER NOT NULL, source VARCHAR NOT NULL,
    reason VARCHAR NOT NULL, raw_record VARCHAR, file_seq INTEGER NOT NULL, rejected_at TIMESTAMP NOT NULL
)"""


def iso_timestamp(text_sql: str) -> str:
    """SQL parsing ISO 8601 text to a UTC timestamp, naive text read in the session TimeZone.

    DuckDB's cast also accepts words such as 'epoch' and 'infinity'; requiring a leading date rules them out.
    """
    return (
        f"case when regexp_matches({text_sql}, '^ *[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')"
        f" then try_cast({text_sql} as timestamptz) at time zone 'UTC' end"
    )


def csv_table_ddl(source: CsvSource) -> str:
    columns = ", ".join(f"{c.name} {_SQL_TYPES[c.kind]}" for c in source.columns)
    return f"create table if not exists {source.table} ({columns}, {_LINEAGE_COLUMNS})"


def ensure_landing_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the raw and quarantine tables; safe to call on every run."""
    conn.execute("create schema if not exists raw")
    conn.execute("create schema if not exists quarantine")
    for ddl in (EVENTS_DDL, MANIFEST_DDL, CHANGED_FILES_DDL, QUARANTINE_DDL):
        conn.execute(ddl)
    for source in CSV_SOURCES.values():
        conn.execute(csv_table_ddl(source))


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class LandedFile:
    path: Path
    relative_path: str
    folder: str
    size_bytes: int
    sha256: str


@dataclass
class FileStats:
    relative_path: str
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    note: str | None = None

    @property
    def balanced(self) -> bool:
        return self.read == self.loaded + self.quarantined + self.duplicates


@dataclass
class IngestResult:
    folder: str
    files: list[FileStats] = field(default_factory=list)
    skipped_unchanged: int = 0
    changed_files: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        return {
            "files_ingested": len(self.files),
            "files_already_ingested": self.skipped_unchanged,
            "files_changed_after_ingestion": len(self.changed_files),
            "records_read": sum(f.read for f in self.files),
            "records_loaded": sum(f.loaded for f in self.files),
            "records_quarantined": sum(f.quarantined for f in self.files),
            "records_duplicate": sum(f.duplicates for f in self.files),
        }


def _matches_folder(path: Path, folder: str) -> bool:
    name = path.name.lower()
    if folder == "events":
        return name.endswith((".jsonl", ".jsonl.gz"))
    return name.endswith((".csv", ".csv.gz"))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def discover_files(landing_dir: Path, folder: str) -> list[LandedFile]:
    """Files of one contract folder, in a stable order (path order = receive order)."""
    root = landing_dir / folder
    if not root.is_dir():
        return []
    paths = sorted(p for p in root.rglob("*") if p.is_file() and _matches_folder(p, folder))
    return [
        LandedFile(
            path=p,
            relative_path=p.relative_to(landing_dir).as_posix(),
            folder=folder,
            size_bytes=p.stat().st_size,
            sha256=file_sha256(p),
        )
        for p in paths
    ]


def partition_new_files(
    conn: duckdb.DuckDBPyConnection, files: list[LandedFile]
) -> tuple[list[LandedFile], list[LandedFile], list[tuple[LandedFile, str]]]:
    """Split into new, already ingested (same bytes), and changed after ingestion (never re-read)."""
    known = dict(conn.execute("select relative_path, sha256 from raw.landed_files").fetchall())
    new, unchanged, changed = [], [], []
    for landed in files:
        previous = known.get(landed.relative_path)
        if previous is None:
            new.append(landed)
        elif previous == landed.sha256:
            unchanged.append(landed)
        else:
            changed.append((landed, previous))
    return new, unchanged, changed


# ---------------------------------------------------------------- decoding


class UndecodableFile(Exception):
    """The whole file is rejected: reading part of it would silently lose or garble records."""


def read_text(landed: LandedFile) -> str:
    """Decode a landed file: gzip if named so; UTF-8 (BOM optional) or UTF-16 with a BOM."""
    data = landed.path.read_bytes()
    if landed.relative_path.lower().endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise UndecodableFile(f"not a valid gzip file ({error})") from error
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise UndecodableFile(f"invalid UTF-16 at byte {error.start}") from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UndecodableFile(
            f"not valid UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} "
            "(is it a GBK/GB18030 export from Excel? re-save it as UTF-8)"
        ) from error


def raw_lines(landed: LandedFile) -> list[str]:
    """Lines of an undecodable file as readable as they can be made, for quarantine.

    A broken .gz is decompressed as far as it goes; UTF-16 with a BOM is decoded as such; anything else is
    shown as UTF-8 with replacement characters.
    """
    data = landed.path.read_bytes()
    if landed.relative_path.lower().endswith(".gz"):
        with contextlib.suppress(zlib.error):  # not gzip at all: show the bytes as they are
            data = zlib.decompressobj(wbits=31).decompress(data)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    else:
        text = data.decode("utf-8", errors="replace")
    return [line.rstrip("\r") for line in text.split("\n")]


def split_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line; blank lines are not records."""
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


# ---------------------------------------------------------------- batches


@dataclass
class Batch:
    """Files whose records are validated and written together, in one transaction."""

    files: list[tuple[LandedFile, int, FileStats]] = field(default_factory=list)
    rows: dict[str, list] = field(default_factory=dict)
    rejects: list[tuple[str, int, str, str, int]] = field(
        default_factory=list
    )  # file, line, reason, raw, seq

    @property
    def row_count(self) -> int:
        return len(self.rows.get("source_file", []))

    def add_rows(self, columns: dict[str, list]) -> None:
        for name, values in columns.items():
            self.rows.setdefault(name, []).extend(values)

    def reject_whole_file(self, landed: LandedFile, seq: int, stats: FileStats, reason: str) -> None:
        """Every physical line of a file we cannot decode goes to quarantine, so nothing is silently lost."""
        stats.note = f"whole file rejected: {reason}"
        for number, line in enumerate(raw_lines(landed), start=1):
            if line.strip():
                self.rejects.append((landed.relative_path, number, stats.note, line, seq))


_REJECT_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("line_number", pa.int32()),
        ("reason", pa.string()),
        ("raw_record", pa.string()),
        ("file_seq", pa.int32()),
    ]
)
_MANIFEST_SCHEMA = pa.schema(
    [
        ("relative_path", pa.string()),
        ("folder", pa.string()),
        ("size_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("file_seq", pa.int32()),
        ("records_read", pa.int64()),
        ("records_loaded", pa.int64()),
        ("records_quarantined", pa.int64()),
        ("records_duplicate", pa.int64()),
        ("note", pa.string()),
    ]
)


def _next_file_seq(conn: duckdb.DuckDBPyConnection) -> int:
    return conn.execute("select coalesce(max(file_seq), 0) + 1 from raw.landed_files").fetchall()[0][0]


def _insert_quarantine(conn: duckdb.DuckDBPyConnection, relation: str, source: str) -> None:
    """Quarantine rows of a relation with (source_file, line_number, reason, raw_record, file_seq)."""
    conn.execute(
        f"""
        insert into quarantine.rejected_records
        select source_file, line_number, ?, reason,
               {mask_pii_sql(f"left(raw_record, {MAX_RAW_RECORD_CHARS})")},
               file_seq, current_timestamp::timestamp
        from {relation}
        """,
        [source],
    )


def _record_changed(conn: duckdb.DuckDBPyConnection, changed: list[tuple[LandedFile, str]]) -> None:
    for landed, previous_sha in changed:
        conn.execute(
            "insert into raw.changed_files values (?, ?, ?, ?, current_timestamp::timestamp)",
            [landed.relative_path, previous_sha, landed.sha256, landed.size_bytes],
        )


def _write_batch(
    conn: duckdb.DuckDBPyConnection,
    batch: Batch,
    folder: str,
    load_rows: Callable[[duckdb.DuckDBPyConnection], dict[str, tuple[int, int, int]]],
) -> None:
    """Atomically: load the batch's rows, quarantine its rejects, and record its files in the manifest.

    `load_rows` writes the registered `batch_rows` and returns {file: (loaded, quarantined, duplicates)}.
    A crash anywhere leaves none of the batch's files in the manifest, so they are simply re-read.
    """
    rejects = pa.Table.from_pylist(
        [dict(zip(_REJECT_SCHEMA.names, r, strict=True)) for r in batch.rejects], schema=_REJECT_SCHEMA
    )
    conn.execute("begin transaction")
    try:
        counts = load_rows(conn) if batch.row_count else {}
        conn.register("batch_rejects", rejects)
        _insert_quarantine(conn, "batch_rejects", folder)
        conn.unregister("batch_rejects")
        rejected_by_file: dict[str, int] = {}
        for source_file, *_ in batch.rejects:
            rejected_by_file[source_file] = rejected_by_file.get(source_file, 0) + 1
        manifest = []
        for landed, seq, stats in batch.files:
            loaded, quarantined, duplicates = counts.get(landed.relative_path, (0, 0, 0))
            stats.loaded = loaded
            stats.quarantined = quarantined + rejected_by_file.get(landed.relative_path, 0)
            stats.duplicates = duplicates
            stats.read = stats.loaded + stats.quarantined + stats.duplicates
            manifest.append(
                (
                    landed.relative_path,
                    folder,
                    landed.size_bytes,
                    landed.sha256,
                    seq,
                    stats.read,
                    stats.loaded,
                    stats.quarantined,
                    stats.duplicates,
                    stats.note,
                )
            )
        conn.register(
            "batch_manifest",
            pa.Table.from_pylist(
                [dict(zip(_MANIFEST_SCHEMA.names, m, strict=True)) for m in manifest], schema=_MANIFEST_SCHEMA
            ),
        )
        conn.execute(
            "insert into raw.landed_files select relative_path, folder, size_bytes, sha256, file_seq,"
            " current_timestamp::timestamp, records_read, records_loaded, records_quarantined,"
            " records_duplicate, note from batch_manifest"
        )
        conn.unregister("batch_manifest")
        conn.execute("commit")
    except BaseException:
        # A COMMIT that fails (disk full) has already ended the transaction; a second error from ROLLBACK
        # would hide the one that says what went wrong, so only the original is raised.
        with contextlib.suppress(duckdb.TransactionException):
            conn.execute("rollback")
        raise


def _ingest_in_batches(
    conn: duckdb.DuckDBPyConnection,
    files: list[LandedFile],
    folder: str,
    read_file: Callable[[LandedFile, int, FileStats, Batch], None],
    load_rows: Callable[[duckdb.DuckDBPyConnection], dict[str, tuple[int, int, int]]],
    progress: Callable[[LandedFile], None],
    batch_rows: int,
) -> list[FileStats]:
    """Read files into batches of about `batch_rows` records and write each batch atomically."""
    all_stats: list[FileStats] = []
    batch = Batch()
    seq = _next_file_seq(conn)
    for landed in files:
        stats = FileStats(landed.relative_path)
        try:
            read_file(landed, seq, stats, batch)
        except UndecodableFile as error:
            batch.reject_whole_file(landed, seq, stats, str(error))
        batch.files.append((landed, seq, stats))
        all_stats.append(stats)
        seq += 1
        progress(landed)
        if batch.row_count + len(batch.rejects) >= batch_rows:
            _flush(conn, batch, folder, load_rows)
            batch = Batch()
    if batch.files:
        _flush(conn, batch, folder, load_rows)
    return all_stats


def _flush(conn, batch: Batch, folder: str, load_rows) -> None:
    if batch.row_count:
        conn.register("batch_rows", pa.table(batch.rows))
    try:
        _write_batch(conn, batch, folder, load_rows)
    finally:
        if batch.row_count:
            conn.unregister("batch_rows")


# ---------------------------------------------------------------- events


_EVENT_LINES_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("file_seq", pa.int32()),
        ("line_number", pa.int32()),
        ("raw", pa.string()),
    ]
)

_EVENT_PATHS = ", ".join(
    f"'$.{key}'"
    for key in (
        "messageId", "type", "event", "name", "userId", "anonymousId", "previousId", "timestamp",
        "properties", "context", "traits",
    )
)
# Each reason is a constant written here; the data only ever reaches SQL as registered Arrow columns.
_EVENT_PARSE_SQL = f"""
create or replace temp table event_batch as
with parsed as materialized (
    select source_file, file_seq, line_number, raw, try_cast(raw as json) as j from batch_rows
), lines as materialized (
    -- each list-form call parses the line once for all paths: field types, their text, the nested objects
    select source_file, file_seq, line_number, raw, json_type(j) as record_type,
           case when json_type(j) = 'OBJECT' then json_type(j, [{_EVENT_PATHS}]) end as t,
           case when json_type(j) = 'OBJECT' then json_extract_string(j, [{_EVENT_PATHS}]) end as s,
           case when json_type(j) = 'OBJECT' then json_extract(j, ['$.properties', '$.context', '$.traits']) end
               as o
    from parsed
), fields as materialized (
    select source_file, file_seq, line_number, raw, record_type,
        case when t[1] = 'VARCHAR' then s[1] end as message_id,
        s[2] as event_type,
        case when t[3] = 'VARCHAR' then nullif(s[3], '') end as event_name,
        case when t[4] = 'VARCHAR' then s[4] end as page_name,
        case when t[5] in ('VARCHAR', 'UBIGINT', 'BIGINT') then nullif(trim(s[5]), '') end as user_id,
        case when t[6] in ('VARCHAR', 'UBIGINT', 'BIGINT') then nullif(trim(s[6]), '') end as anonymous_id,
        case when t[7] in ('VARCHAR', 'UBIGINT', 'BIGINT') then nullif(trim(s[7]), '') end as previous_id,
        case when t[8] = 'VARCHAR' then s[8] end as timestamp_text,
        t[8] is not null and t[8] not in ('VARCHAR', 'NULL') as timestamp_wrong_type,
        t[5] is not null and t[5] not in ('VARCHAR', 'UBIGINT', 'BIGINT', 'NULL') as user_id_wrong_type,
        case when t[9] = 'OBJECT' then o[1] end as properties,
        case when t[10] = 'OBJECT' then o[2] end as context,
        case when t[11] = 'OBJECT' then o[3] end as traits
    from lines
), typed as (
    select *, {iso_timestamp("timestamp_text")} as occurred_at from fields
)
select *,
    case
        when record_type is null then 'malformed JSON: the line cannot be parsed'
        when record_type <> 'OBJECT' then 'not a JSON object'
        when message_id is null or message_id = '' then 'missing messageId (a non-empty string is required)'
        when length(message_id) > {MAX_MESSAGE_ID_LENGTH}
            then 'messageId longer than {MAX_MESSAGE_ID_LENGTH} characters'
        when event_type is null then 'missing type'
        when event_type not in {EVENT_TYPES} then 'unknown type (expected track, page, screen, identify or alias)'
        when timestamp_wrong_type then 'timestamp is not a string (ISO 8601 expected)'
        when timestamp_text is null then 'missing timestamp'
        when occurred_at is null then 'unparsable timestamp (ISO 8601 expected)'
        when user_id is null and anonymous_id is null and user_id_wrong_type
            then 'userId is neither a string nor a whole number'
        when user_id is null and anonymous_id is null then 'missing both userId and anonymousId'
        when event_type = 'track' and event_name is null then 'track call without an event name'
        when event_type = 'alias' and previous_id is null then 'alias call without previousId'
    end as reason
from typed
"""

_EVENT_INSERT_SQL = f"""
insert into raw.events
select message_id, event_type, event_name, page_name, user_id, anonymous_id, previous_id,
       occurred_at, timestamp_text, properties, context,
       case when traits is not null
            then json_merge_patch(traits, {{{", ".join(f"'{k}': null" for k in PII_TRAIT_KEYS)}}}::json)
       end,
       case when traits->>'$.phone' is not null and trim(traits->>'$.phone') <> ''
            then hx_hash_phone(traits->>'$.phone') end,
       source_file, line_number, file_seq
from event_batch b
where reason is null and is_first_copy
"""


def _register_phone_hash(conn: duckdb.DuckDBPyConnection, salt: str) -> None:
    with contextlib.suppress(duckdb.InvalidInputException, duckdb.CatalogException):
        conn.remove_function("hx_hash_phone")  # registered by an earlier call on this connection
    conn.create_function(
        "hx_hash_phone",
        lambda value: hash_phone(value, salt),
        [duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("VARCHAR"),
        side_effects=False,
    )


def _read_event_file(landed: LandedFile, seq: int, stats: FileStats, batch: Batch) -> None:
    lines = list(split_lines(read_text(landed)))
    batch.add_rows(
        {
            "source_file": [landed.relative_path] * len(lines),
            "file_seq": [seq] * len(lines),
            "line_number": [n for n, _ in lines],
            "raw": [line for _, line in lines],
        }
    )


def _load_event_rows(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int, int]]:
    """Validate, keep the first copy of each messageId (this batch and all before it), quarantine the rest."""
    conn.execute(_EVENT_PARSE_SQL)
    conn.execute(
        """
        create or replace temp table event_batch as
        select b.*,
               reason is null
               and row_number() over (partition by message_id, reason is null order by file_seq, line_number) = 1
               and not exists (select 1 from raw.events e where e.message_id = b.message_id)
               as is_first_copy
        from event_batch b
        """
    )
    conn.execute(_EVENT_INSERT_SQL)
    _insert_quarantine(
        conn,
        "(select source_file, line_number, reason, raw as raw_record, file_seq"
        " from event_batch where reason is not null)",
        "events",
    )
    counts = conn.execute(
        """
        select source_file, count(*) filter (where reason is null and is_first_copy),
               count(*) filter (where reason is not null),
               count(*) filter (where reason is null and not is_first_copy)
        from event_batch group by source_file
        """
    ).fetchall()
    conn.execute("drop table event_batch")
    return {row[0]: tuple(row[1:]) for row in counts}


def ingest_events(
    conn: duckdb.DuckDBPyConnection,
    files: list[LandedFile],
    salt: str,
    progress: Callable[[LandedFile], None] = lambda _: None,
    batch_lines: int = EVENT_BATCH_LINES,
) -> list[FileStats]:
    """Load new event files in atomic batches of about `batch_lines` lines."""
    _register_phone_hash(conn, salt)
    return _ingest_in_batches(
        conn, files, "events", _read_event_file, _load_event_rows, progress, batch_lines
    )


# ---------------------------------------------------------------- CSV sources


@dataclass
class ParsedCsv:
    """Rows of one CSV file as strings, with the physical line they start on."""

    columns: dict[str, list[str | None]]
    line_numbers: list[int]
    raw_records: list[str]
    rejects: list[tuple[int, str, str]]  # (line, reason, raw)
    note: str | None = None


def parse_csv(text: str, source: CsvSource, salt: str) -> ParsedCsv:
    """Split a CSV file into well-formed rows (by header name) and structural rejects."""
    physical = io.StringIO(text, newline="").readlines()
    reader = csv.reader(io.StringIO(text, newline=""))
    wanted = [c.name for c in source.columns]
    phone_columns = {c.name for c in source.columns if c.kind == "phone"}
    columns: dict[str, list[str | None]] = {name: [] for name in wanted}
    line_numbers: list[int] = []
    raw_records: list[str] = []
    rejects: list[tuple[int, str, str]] = []

    header: list[str] | None = None
    file_reason: str | None = None
    note = None
    last_line = 0
    try:
        for fields in reader:
            start, last_line = last_line + 1, reader.line_num
            raw = "".join(physical[start - 1 : last_line]).rstrip("\r\n")
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                file_reason, note = _check_header(header, wanted)
                continue
            if file_reason:
                rejects.append((start, file_reason, raw))
                continue
            if len(fields) != len(header):
                rejects.append((start, f"row has {len(fields)} fields but the header has {len(header)}", raw))
                continue
            row = dict(zip(header, fields, strict=True))
            row_phones = phone_columns | {
                c.name
                for c in source.columns
                if c.phone_when and _row_value(row, c.phone_when[0]) == c.phone_when[1]
            }
            for name in wanted:
                value = row.get(name, "").strip()
                if value and name in row_phones:
                    value = hash_phone(value, salt)
                columns[name].append(value or None)
            line_numbers.append(start)
            raw_records.append(_mask_phones_in_row(raw, row, row_phones, salt))
    except csv.Error as error:
        rejects.append((last_line + 1, f"CSV syntax error: {error}", "".join(physical[last_line:])))
    return ParsedCsv(columns, line_numbers, raw_records, rejects, note)


def _row_value(row: dict[str, str], name: str) -> str:
    return row.get(name, "").strip()


def _mask_phones_in_row(raw: str, row: dict[str, str], phone_columns: set[str], salt: str) -> str:
    for name in phone_columns:
        value = row.get(name, "").strip()
        if value:
            raw = raw.replace(value, hash_phone(value, salt))
    return raw


def _check_header(header: list[str], wanted: list[str]) -> tuple[str | None, str | None]:
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        return f"header repeats column(s): {', '.join(duplicates)}", None
    missing = [name for name in wanted if name not in header]
    if missing:
        return f"header is missing required column(s): {', '.join(missing)}", None
    extra = [h for h in header if h not in wanted]
    return None, (f"ignored extra column(s): {', '.join(extra)}" if extra else None)


def _csv_validation_sql(source: CsvSource) -> str:
    """Typed projection plus the first failing rule as `reason`, all generated from the column spec."""
    typed, reasons = [], []
    for c in source.columns:
        value = f"nullif(trim({c.name}), '')"
        if c.kind in ("text", "phone"):
            cast = value
        elif c.kind == "timestamp":
            cast = iso_timestamp(value)
        elif c.kind == "bool":
            cast = f"case lower({value}) when 'true' then true when 'false' then false end"
        elif c.kind == "int":
            cast = f"case when regexp_full_match({value}, '[+-]?[0-9]+') then try_cast({value} as BIGINT) end"
        else:
            cast = f"try_cast({value} as {_SQL_TYPES[c.kind]})"
        typed.append(f"{cast} as typed_{c.name}")
        if c.required:
            reasons.append((f"{value} is null", f"missing {c.name}"))
        if c.kind not in ("text", "phone"):
            reasons.append(
                (f"{value} is not null and ({cast}) is null", f"{c.name} is not {_KIND_LABELS[c.kind]}")
            )
        if c.non_negative:
            reasons.append((f"({cast}) < 0", f"negative {c.name}"))
        if c.allowed:
            allowed = ", ".join(f"'{a}'" for a in c.allowed)
            reasons.append((f"{value} not in ({allowed})", f"{c.name} is not one of {'|'.join(c.allowed)}"))
    cases = " ".join(f"when {cond} then '{reason}'" for cond, reason in (*reasons, *source.row_rules))
    return f"""
        create or replace temp table csv_batch as
        with typed as (select s.*, {", ".join(typed)} from batch_rows s)
        select *, case {cases} end as reason from typed
    """


_KIND_LABELS = {
    "int": "a whole number",
    "decimal": "a number",
    "timestamp": "a valid timestamp",
    "date": "a valid date (YYYY-MM-DD)",
    "bool": "true or false",
}


def _read_csv_file(source: CsvSource, salt: str) -> Callable[[LandedFile, int, FileStats, Batch], None]:
    def read(landed: LandedFile, seq: int, stats: FileStats, batch: Batch) -> None:
        parsed = parse_csv(read_text(landed), source, salt)
        stats.note = parsed.note
        n = len(parsed.line_numbers)
        batch.add_rows(
            {
                **parsed.columns,
                "source_file": [landed.relative_path] * n,
                "line_number": parsed.line_numbers,
                "file_seq": [seq] * n,
                "raw_record": parsed.raw_records,
            }
        )
        batch.rejects.extend(
            (landed.relative_path, line, reason, raw, seq) for line, reason, raw in parsed.rejects
        )

    return read


def _load_csv_rows(
    source: CsvSource,
) -> Callable[[duckdb.DuckDBPyConnection], dict[str, tuple[int, int, int]]]:
    def load(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int, int]]:
        conn.execute(_csv_validation_sql(source))
        names = ", ".join(f"typed_{c.name}" for c in source.columns)
        conn.execute(
            f"insert into {source.table} select {names}, source_file, line_number, file_seq"
            " from csv_batch where reason is null"
        )
        _insert_quarantine(
            conn,
            "(select source_file, line_number, reason, raw_record, file_seq from csv_batch where reason is not null)",
            source.folder,
        )
        counts = conn.execute(
            "select source_file, count(*) filter (where reason is null),"
            " count(*) filter (where reason is not null) from csv_batch group by source_file"
        ).fetchall()
        conn.execute("drop table csv_batch")
        return {row[0]: (row[1], row[2], 0) for row in counts}

    return load


def ingest_csv(
    conn: duckdb.DuckDBPyConnection,
    files: list[LandedFile],
    source: CsvSource,
    salt: str,
    progress: Callable[[LandedFile], None] = lambda _: None,
    batch_rows: int = CSV_BATCH_ROWS,
) -> list[FileStats]:
    """Load new snapshot files of one CSV source in atomic batches."""
    return _ingest_in_batches(
        conn, files, source.folder, _read_csv_file(source, salt), _load_csv_rows(source), progress, batch_rows
    )


# ---------------------------------------------------------------- entry point


def ingest_folder(
    conn: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    folder: str,
    salt: str,
    progress: Callable[[LandedFile], None] = lambda _: None,
    batch_lines: int = EVENT_BATCH_LINES,
) -> IngestResult:
    """Ingest every new file of one landing folder; files seen before are skipped, changed ones reported."""
    ensure_landing_tables(conn)
    new, unchanged, changed = partition_new_files(conn, discover_files(landing_dir, folder))
    result = IngestResult(
        folder, skipped_unchanged=len(unchanged), changed_files=[f.relative_path for f, _ in changed]
    )
    _record_changed(conn, changed)
    if folder == "events":
        result.files = ingest_events(conn, new, salt, progress, batch_lines)
    else:
        result.files = ingest_csv(conn, new, CSV_SOURCES[folder], salt, progress, batch_lines)
    return result
