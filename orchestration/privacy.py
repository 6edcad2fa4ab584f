"""Right to erasure, suppression of erased identifiers, and the checks that prove nothing personal is left.

The `erasure` asset runs after every `raw/*` landing asset and before the dbt staging layer. For each new
request it finds the person (all identifiers of their user_key in the previous run's identity map), deletes
every row about them in every schema, redacts mentions of them in other people's rows, rewrites exported
audience files, and keeps only keyed hashes (HMAC-SHA-256 of "type:value", keyed by HUAXIANG_PII_SALT) so
that records landed later for an erased identifier are removed before anything downstream reads them.
Identifier values are never logged and never written: they exist in memory only while a request is
processed, so `privacy.*` holds hashes, request ids, timestamps and counts.
"""

import csv
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
from dagster_dbt import DagsterDbtTranslator

from expectations.pii_scan import quote_identifier, scan_for_pii
from orchestration.landing import LANDING_FOLDERS
from orchestration.pii import hash_phone
from orchestration.resources import HuaxiangResource, table_exists
from orchestration.settings import DEV_PII_SALT, Settings

ERASURE_LOG = dg.AssetKey(["privacy", "erasure_log"])
PUBLISHED_WAREHOUSE = dg.AssetKey(["published_warehouse"])
RAW_ASSET_KEYS = [dg.AssetKey(["raw", folder]) for folder in LANDING_FOLDERS]
IDENTIFIER_TYPES = ("user_id", "phone", "openid", "unionid", "anonymous_id")
# Types an erased person's rows are found by: the contract's identifiers, the person's key, their orders.
TARGET_TYPES = (*IDENTIFIER_TYPES, "user_key", "order_id")
PROTECTED_SCHEMAS = ("privacy",)  # holds only hashes and counts; never swept, always scanned
ERASED_MARK = "[erased]"
# Free text is searched for a value only as a whole token: bounded by characters an identifier cannot hold.
TOKEN_CHARACTERS = "A-Za-z0-9_-"
# Shorter values (a CRM user_id such as "42") are matched in identifier columns only, never in free text,
# where they would hit quantities and unrelated ids.
MIN_FREE_TEXT_LENGTH = 6
ALLOW_DEV_SALT_VARIABLE = "HUAXIANG_ALLOW_DEV_SALT"

# Columns that name an identifier without saying so in their name, per raw table: (SQL over `t`, type).
EXTRA_IDENTIFIER_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "raw.events": (
        ("t.previous_id", "user_id"),
        ("t.previous_id", "anonymous_id"),
        ("t.context->>'$.wechat.openid'", "openid"),
        ("t.context->>'$.wechat.unionid'", "unionid"),
        ("t.traits_phone_hash", "phone"),
    ),
    # Incremental models are not rebuilt from raw after an erasure, so their rows must match on their own.
    "staging.stg_segment__events": (
        ("t.previous_id", "user_id"),
        ("t.previous_id", "anonymous_id"),
        ("t.wechat_openid", "openid"),
        ("t.wechat_unionid", "unionid"),
        ("t.traits_phone_hash", "phone"),
    ),
    "marts.fct_events": (("t.wechat_openid", "openid"),),
}

PRIVACY_DDL = (
    "create schema if not exists privacy",
    """create table if not exists privacy.erased_identifiers (
        identifier_hash VARCHAR PRIMARY KEY, identifier_type VARCHAR NOT NULL,
        request_id VARCHAR NOT NULL, erased_at TIMESTAMP NOT NULL)""",
    """create table if not exists privacy.erasure_log (
        request_id VARCHAR NOT NULL, requested_at TIMESTAMP, processed_at TIMESTAMP NOT NULL,
        identifier_type VARCHAR NOT NULL, person_found BOOLEAN NOT NULL, identifiers_erased INTEGER NOT NULL,
        rows_removed JSON NOT NULL)""",
    """create table if not exists privacy.erasure_runs (
        run_at TIMESTAMP NOT NULL, requests_processed INTEGER NOT NULL, values_redacted JSON NOT NULL,
        export_rows_removed INTEGER NOT NULL, records_suppressed BIGINT NOT NULL,
        screened_through_file_seq INTEGER NOT NULL)""",
    """create table if not exists privacy.removed_records (
        source_file VARCHAR NOT NULL, table_name VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        records_removed BIGINT NOT NULL, removed_at TIMESTAMP NOT NULL)""",
)


class DevSaltError(RuntimeError):
    """The shipped development key would make every phone hash reversible by anyone with the source code."""


def check_salt(settings: Settings) -> None:
    """Refuse the public development key on real data: generated demo folders and explicit opt-in only."""
    if not settings.pii_salt:
        raise DevSaltError(
            "HUAXIANG_PII_SALT is empty; set it to a long random secret (e.g. `openssl rand -hex 32`)."
        )
    if settings.pii_salt != DEV_PII_SALT:
        return
    if (settings.landing_dir / "_truth" / "summary.json").is_file():
        return
    if os.environ.get(ALLOW_DEV_SALT_VARIABLE) == "1":
        return
    raise DevSaltError(
        f"HUAXIANG_PII_SALT is the public development key, and {settings.landing_dir} is not a generated "
        "demo folder. Phone hashes made with it can be reversed by anyone who has the source code. Set "
        "HUAXIANG_PII_SALT to a long random secret (e.g. `openssl rand -hex 32`) and keep it out of the "
        f"repository; set {ALLOW_DEV_SALT_VARIABLE}=1 only for throw-away test data."
    )


# ---------------------------------------------------------------- keyed hashes


def keyed_hash(identifier_type: str, value: str, salt: str) -> str:
    """HMAC-SHA-256 of "type:value": later data can be matched to an erasure without keeping the value."""
    return hmac.new(salt.encode(), f"{identifier_type}:{value}".encode(), hashlib.sha256).hexdigest()


def hmac_pads(salt: str) -> tuple[bytes, bytes]:
    """The inner and outer HMAC-SHA-256 keys (RFC 2104), so DuckDB's sha256 can compute the same HMAC."""
    key = salt.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def register_keyed_hash(conn: duckdb.DuckDBPyConnection, salt: str) -> None:
    """Define `hx_keyed_hash(text)` for this session; the key is a registered table, never SQL text."""
    inner, outer = hmac_pads(salt)
    conn.register("hx_hmac_key", pa.table({"inner_pad": [inner], "outer_pad": [outer]}))
    conn.execute(
        "create or replace temp macro hx_keyed_hash(text) as sha256((select outer_pad from hx_hmac_key)"
        " || unhex(sha256((select inner_pad from hx_hmac_key) || encode(text))))"
    )


# ---------------------------------------------------------------- who is erased


def normalise_requests(requests: pd.DataFrame, salt: str) -> pd.DataFrame:
    """Requests with the value as the warehouse stores it: phones as their keyed hash, others trimmed.

    Landing already hashes phone values of erasure requests; a value that is not a 64-hex hash yet (a
    request from before that fix) is hashed here.
    """
    requests = requests.copy()
    values = requests["identifier_value"].astype("str").str.strip()
    is_raw_phone = (requests["identifier_type"] == "phone") & ~values.str.fullmatch(r"[0-9a-f]{64}")
    values = values.where(~is_raw_phone, values[is_raw_phone].map(lambda v: hash_phone(v, salt)))
    requests["identifier_value"] = values
    return requests


def expand_to_people(requests: pd.DataFrame, identity_map: pd.DataFrame | None) -> pd.DataFrame:
    """Every identifier and key of the person behind each request; an unknown identifier stands alone.

    Returns (request_id, identifier_type, identifier_value) with the request's own identifier, the user_key
    of the person it resolved to in the previous run, and every identifier mapped to that key.
    """
    own = requests[["request_id", "identifier_type", "identifier_value"]]
    if identity_map is None or identity_map.empty:
        return own.drop_duplicates(ignore_index=True)
    keys = own.merge(identity_map, on=["identifier_type", "identifier_value"])[["request_id", "user_key"]]
    people = keys.merge(identity_map, on="user_key")[["request_id", "identifier_type", "identifier_value"]]
    key_rows = keys.rename(columns={"user_key": "identifier_value"}).assign(identifier_type="user_key")
    targets = pd.concat([own, people, key_rows[own.columns]], ignore_index=True)
    return targets.astype("str").drop_duplicates(ignore_index=True)


def free_text_pattern(values: Iterable[str]) -> str | None:
    """One RE2 pattern finding any of the values as a whole token (group 2 is the value found)."""
    long_enough = sorted({v for v in values if len(v) >= MIN_FREE_TEXT_LENGTH}, key=lambda v: (-len(v), v))
    if not long_enough:
        return None
    alternatives = "|".join(re.escape(v) for v in long_enough)
    return f"(^|[^{TOKEN_CHARACTERS}])({alternatives})([^{TOKEN_CHARACTERS}]|$)"


# ---------------------------------------------------------------- where identifiers live


@dataclass(frozen=True)
class WarehouseTable:
    schema: str
    name: str
    columns: dict[str, str]  # column name -> DuckDB data type

    @property
    def qualified(self) -> str:
        return f"{quote_identifier(self.schema)}.{quote_identifier(self.name)}"

    @property
    def dotted(self) -> str:
        return f"{self.schema}.{self.name}"

    def identifier_columns(self) -> list[tuple[str, str]]:
        """(SQL, type SQL) over alias `t` for columns holding one identifier each, found by column name."""
        found: list[tuple[str, str]] = []
        for column, data_type in self.columns.items():
            if not is_text_type(data_type):
                continue
            quoted = "t." + quote_identifier(column)
            if column in TARGET_TYPES:
                found.append((quoted, f"'{column}'"))
            elif column.endswith("user_key"):
                found.append((quoted, "'user_key'"))
            elif column.endswith("value") and column[: -len("value")] + "type" in self.columns:
                found.append((quoted, "t." + quote_identifier(column[: -len("value")] + "type")))
        found.extend((sql, f"'{kind}'") for sql, kind in EXTRA_IDENTIFIER_COLUMNS.get(self.dotted, ()))
        return found


def is_text_type(data_type: str) -> bool:
    """Plain text columns, the only ones redaction rewrites (nested types are scanned, not rewritten)."""
    return data_type.upper() in ("VARCHAR", "JSON")


def warehouse_tables(conn: duckdb.DuckDBPyConnection) -> list[WarehouseTable]:
    """Every base table of the warehouse file, from the catalog, so tables added later are covered too."""
    rows = conn.execute(
        """
        select c.table_schema, c.table_name, c.column_name, c.data_type
        from information_schema.columns c
        join information_schema.tables t using (table_catalog, table_schema, table_name)
        where c.table_catalog = current_database() and t.table_type = 'BASE TABLE'
        order by c.table_schema, c.table_name, c.ordinal_position
        """
    ).fetchall()
    tables: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, data_type in rows:
        tables.setdefault((schema, table), {})[column] = data_type
    return [WarehouseTable(schema, name, columns) for (schema, name), columns in tables.items()]


# ---------------------------------------------------------------- removing and redacting

TARGET_JOIN = "erasure_targets g on g.identifier_type = {kind} and g.identifier_value = ({sql})"
HASH_JOIN = "privacy.erased_identifiers g on g.identifier_hash = hx_keyed_hash({kind} || ':' || ({sql}))"
REMOVAL_COLUMNS = {"request_id": "str", "table_name": "str", "source_file": "str", "rows": "int64"}


def empty_removals() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in REMOVAL_COLUMNS.items()})


def identifier_hits_sql(table: WarehouseTable, join: str, where: str = "") -> str:
    """Rows whose identifier columns match (one per row, with the first matching request)."""
    matches = " union all ".join(
        f"select t.rowid as row_id, g.request_id from {table.qualified} t"
        f" join {join.format(sql=sql, kind=kind)}{where}"
        for sql, kind in table.identifier_columns()
    )
    return f"select row_id, min(request_id) as request_id from ({matches}) group by row_id"


def remove_hits(
    conn: duckdb.DuckDBPyConnection, table: WarehouseTable, hits_sql: str, parameters: dict | None = None
) -> pd.DataFrame:
    """Delete the rows `hits_sql` names; returns how many per request and landed file."""
    conn.execute(f"create or replace temp table erasure_hits as {hits_sql}", parameters or {})
    source = "t.source_file" if "source_file" in table.columns else "null::varchar"
    removed = conn.execute(
        f"""
        select h.request_id, '{table.dotted}' as table_name, {source} as source_file, count(*) as rows
        from erasure_hits h join {table.qualified} t on t.rowid = h.row_id
        group by all
        """
    ).df()
    conn.execute(f"delete from {table.qualified} where rowid in (select row_id from erasure_hits)")
    conn.execute("drop table erasure_hits")
    return removed.astype(REMOVAL_COLUMNS)


# Quarantined text is free text: the value is found as a token and attributed to the request naming it.
QUARANTINE_TEXT_HITS_SQL = """
    select q.rowid as row_id, min(g.request_id) as request_id
    from quarantine.rejected_records q
    join erasure_targets g on g.identifier_value = regexp_extract(q.raw_record, $pattern, 2)
    where regexp_matches(q.raw_record, $pattern)
    group by q.rowid
"""


def quarantine_token_hits_sql(after_file_seq: int) -> str:
    """Newly quarantined records holding an erased identifier as any token, whatever its type."""
    kinds = ", ".join(f"'{kind}'" for kind in TARGET_TYPES)
    return f"""
        with tokens as (
            select distinct q.rowid as row_id,
                   unnest(regexp_extract_all(q.raw_record, '[{TOKEN_CHARACTERS}]+')) as token
            from quarantine.rejected_records q
            where q.file_seq > {int(after_file_seq)}
        )
        select t.row_id, min(g.request_id) as request_id
        from tokens t cross join (select unnest([{kinds}]) as kind) k
        join privacy.erased_identifiers g on g.identifier_hash = hx_keyed_hash(k.kind || ':' || t.token)
        group by t.row_id
    """


def redact_mentions(conn: duckdb.DuckDBPyConnection, table: WarehouseTable, pattern: str) -> int:
    """Replace each mention of an erased person in other people's rows (a sharer's id) by a mark."""
    redacted = 0
    for column, data_type in table.columns.items():
        if not is_text_type(data_type):
            continue
        quoted = quote_identifier(column)
        replaced = f"regexp_replace({quoted}::varchar, $pattern, $mark, 'g')"
        if data_type.upper() == "JSON":
            replaced = f"({replaced})::json"
        # A global replace consumes the boundary after a match, so "a,a" needs a second pass.
        while changed := conn.execute(
            f"update {table.qualified} set {quoted} = {replaced}"
            f" where regexp_matches({quoted}::varchar, $pattern)",
            {"pattern": pattern, "mark": f"\\1{ERASED_MARK}\\3"},
        ).fetchall()[0][0]:
            redacted += changed
    return redacted


def leftover_mentions(conn: duckdb.DuckDBPyConnection, values: Iterable[str]) -> pd.DataFrame:
    """(schema, table, column, rows) still naming one of the values anywhere in the file, all columns as text.

    Long values are searched as tokens in every column of every table (privacy included); short ones, which
    would match quantities, are compared with whole text values.
    """
    values = set(values)
    pattern = free_text_pattern(values)
    short_values = sorted(v for v in values if len(v) < MIN_FREE_TEXT_LENGTH)
    found = []
    for table in warehouse_tables(conn):
        tests = []
        for column, data_type in table.columns.items():
            text = f"{quote_identifier(column)}::varchar"
            conditions = [f"regexp_matches({text}, $pattern)"] if pattern else []
            if short_values and is_text_type(data_type):
                conditions.append(f"list_contains($short_values, {text})")
            if conditions:
                tests.append((column, f"count(*) filter (where {' or '.join(conditions)})"))
        if not tests:
            continue
        parameters = {"pattern": pattern, "short_values": short_values}
        sql = f"select {', '.join(test for _, test in tests)} from {table.qualified}"
        used = {name: value for name, value in parameters.items() if f"${name}" in sql}
        counts = conn.execute(sql, used).fetchall()[0]
        found.extend(
            (table.schema, table.name, column, int(n))
            for (column, _), n in zip(tests, counts, strict=True)
            if n
        )
    return pd.DataFrame(found, columns=["schema", "table", "column", "rows"])


def rewrite_exports(exports_dir: Path, pattern: str | None) -> int:
    """Drop rows naming an erased person from exported CSV files (each rewritten atomically); rows dropped."""
    if pattern is None or not exports_dir.is_dir():
        return 0
    mention = re.compile(pattern)
    dropped = 0
    for path in sorted(exports_dir.rglob("*.csv")):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
        kept = rows[:1] + [row for row in rows[1:] if not any(mention.search(field) for field in row)]
        if len(kept) == len(rows):
            continue
        dropped += len(rows) - len(kept)
        staging = path.with_name(path.name + ".tmp")
        with staging.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(kept)
        os.replace(staging, path)
    return dropped


# ---------------------------------------------------------------- one run


def new_requests(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Requests landed but not yet in the erasure log; the first copy of each request_id counts."""
    if not table_exists(conn, "raw.erasure_requests"):
        return pd.DataFrame(columns=["request_id", "identifier_type", "identifier_value", "requested_at"])
    return conn.execute(
        """
        select request_id, identifier_type, identifier_value, requested_at
        from raw.erasure_requests
        where request_id not in (select request_id from privacy.erasure_log)
        qualify row_number() over (partition by request_id order by file_seq, line_number) = 1
        order by requested_at, request_id
        """
    ).df()


def read_identity_map(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    """The previous run's people: who an identifier belongs to, so the whole person is erased."""
    if not table_exists(conn, "identity.identity_map"):
        return None
    return conn.execute("select identifier_type, identifier_value, user_key from identity.identity_map").df()


def identifier_hashes(targets: pd.DataFrame, salt: str) -> pd.DataFrame:
    """The keyed hash of each target: the only form in which an erased identifier is kept."""
    hashes = targets.assign(
        identifier_hash=[
            keyed_hash(kind, value, salt)
            for kind, value in zip(targets["identifier_type"], targets["identifier_value"], strict=True)
        ]
    )
    return hashes.drop_duplicates("identifier_hash")[["identifier_hash", "identifier_type", "request_id"]]


def person_order_ids(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Orders placed under one of the person's user_ids or phones, so their order lines go too."""
    if not table_exists(conn, "raw.orders"):
        return pd.DataFrame(columns=["request_id", "identifier_type", "identifier_value"], dtype="str")
    return conn.execute(
        """
        select distinct g.request_id, 'order_id' as identifier_type, o.order_id as identifier_value
        from raw.orders o
        join erasure_targets g
          on (g.identifier_type = 'user_id' and g.identifier_value = o.user_id)
          or (g.identifier_type = 'phone' and g.identifier_value = o.phone)
        """
    ).df()


def load_targets(conn: duckdb.DuckDBPyConnection, requests: pd.DataFrame, salt: str) -> pd.DataFrame:
    """The session table `erasure_targets` (request, type, value) for the person behind every request."""
    targets = expand_to_people(normalise_requests(requests, salt), read_identity_map(conn))
    conn.register("erasure_targets_frame", targets)
    conn.execute("create or replace temp table erasure_targets as select * from erasure_targets_frame")
    conn.unregister("erasure_targets_frame")
    orders = person_order_ids(conn)
    conn.register("erasure_orders_frame", orders)
    conn.execute("insert into erasure_targets by name select * from erasure_orders_frame")
    conn.unregister("erasure_orders_frame")
    return conn.execute("select distinct * from erasure_targets").df()


def remember_erased(conn: duckdb.DuckDBPyConnection, targets: pd.DataFrame, salt: str) -> None:
    """Keep the keyed hash of every erased identifier, key and order id for screening later landings."""
    conn.register("erased_hash_frame", identifier_hashes(targets, salt))
    conn.execute(
        "insert into privacy.erased_identifiers select identifier_hash, identifier_type, request_id,"
        " timezone('UTC', current_timestamp) from erased_hash_frame"
        " where identifier_hash not in (select identifier_hash from privacy.erased_identifiers)"
    )
    conn.unregister("erased_hash_frame")


def erase_targets(
    conn: duckdb.DuckDBPyConnection, pattern: str | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Delete every row about the targets in every table, then redact mentions left in other rows."""
    removed = []
    for table in warehouse_tables(conn):
        if table.schema in PROTECTED_SCHEMAS:
            continue
        if table.identifier_columns():
            removed.append(remove_hits(conn, table, identifier_hits_sql(table, TARGET_JOIN)))
        if table.dotted == "quarantine.rejected_records" and pattern:
            removed.append(remove_hits(conn, table, QUARANTINE_TEXT_HITS_SQL, {"pattern": pattern}))
    redacted = {}
    if pattern:
        for table in warehouse_tables(conn):
            if table.schema not in PROTECTED_SCHEMAS and (count := redact_mentions(conn, table, pattern)):
                redacted[table.dotted] = count
    return concat_removals(removed), redacted


def suppress_new_records(conn: duckdb.DuckDBPyConnection, after_file_seq: int) -> pd.DataFrame:
    """Remove records landed since the last screening that carry an erased identifier (by keyed hash)."""
    if not conn.execute("select count(*) from privacy.erased_identifiers").fetchall()[0][0]:
        return empty_removals()
    where = f" where t.file_seq > {int(after_file_seq)}"
    removed = [
        remove_hits(conn, table, identifier_hits_sql(table, HASH_JOIN, where))
        for table in warehouse_tables(conn)
        if table.schema == "raw" and "file_seq" in table.columns and table.identifier_columns()
    ]
    if table_exists(conn, "quarantine.rejected_records"):
        quarantine = WarehouseTable("quarantine", "rejected_records", {"source_file": "VARCHAR"})
        removed.append(remove_hits(conn, quarantine, quarantine_token_hits_sql(after_file_seq)))
    return concat_removals(removed)


def concat_removals(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else empty_removals()


def erasure_log_rows(
    requests: pd.DataFrame, targets: pd.DataFrame, removed: pd.DataFrame, processed_at
) -> pd.DataFrame:
    """One non-identifying row per request: when, which kind of identifier, rows removed per table."""
    rows = []
    for request in requests.itertuples(index=False):
        person = targets[targets["request_id"] == request.request_id]
        mine = removed[removed["request_id"] == request.request_id]
        per_table = {table: int(n) for table, n in mine.groupby("table_name")["rows"].sum().items()}
        rows.append(
            {
                "request_id": request.request_id,
                "requested_at": request.requested_at,
                "processed_at": processed_at,
                "identifier_type": request.identifier_type,
                "person_found": bool((person["identifier_type"] == "user_key").any()),
                "identifiers_erased": int(person["identifier_type"].isin(IDENTIFIER_TYPES).sum()),
                "rows_removed": json.dumps(dict(sorted(per_table.items()))),
            }
        )
    return pd.DataFrame(rows)


NO_TARGETS = pd.DataFrame(columns=["request_id", "identifier_type", "identifier_value"], dtype="str")


@dataclass
class ErasureOutcome:
    log: pd.DataFrame  # one non-identifying row per request processed in this run
    removed: pd.DataFrame  # (request_id, table_name, source_file, rows, reason)
    redacted: dict[str, int]  # table -> values replaced by the erased mark
    export_rows_removed: int
    leftovers: pd.DataFrame  # (schema, table, column, rows) still naming a person erased now: must be empty
    suppressed: int


def run_erasure(conn: duckdb.DuckDBPyConnection, salt: str, exports_dir: Path) -> ErasureOutcome:
    """Erase the people of new requests, then screen records landed since the last run; one transaction."""
    for ddl in PRIVACY_DDL:
        conn.execute(ddl)
    register_keyed_hash(conn, salt)
    processed_at = conn.execute("select timezone('UTC', current_timestamp)").fetchall()[0][0]
    watermark = conn.execute(
        "select coalesce(max(screened_through_file_seq), 0) from privacy.erasure_runs"
    ).fetchall()[0][0]
    screened_through = (
        conn.execute("select coalesce(max(file_seq), 0) from raw.landed_files").fetchall()[0][0]
        if table_exists(conn, "raw.landed_files")
        else watermark
    )
    requests = new_requests(conn)
    conn.execute("begin transaction")
    try:
        targets, pattern, erased, redacted = NO_TARGETS, None, empty_removals(), {}
        if len(requests):
            targets = load_targets(conn, requests, salt)
            remember_erased(conn, targets, salt)
            pattern = free_text_pattern(targets["identifier_value"])
            erased, redacted = erase_targets(conn, pattern)
            conn.execute("drop table erasure_targets")
        # Screening runs after erasure, so it finds only records landed since the previous run.
        suppressed = suppress_new_records(conn, watermark)
        removed = pd.concat(
            [erased.assign(reason="erased"), suppressed.assign(reason="suppressed")], ignore_index=True
        )
        outcome = ErasureOutcome(
            log=erasure_log_rows(requests, targets, erased, processed_at),
            removed=removed,
            redacted=redacted,
            export_rows_removed=rewrite_exports(exports_dir, pattern),
            leftovers=leftover_mentions(conn, targets["identifier_value"]),
            suppressed=int(suppressed["rows"].sum()),
        )
        write_privacy_tables(conn, outcome, screened_through)
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    return outcome


def write_privacy_tables(
    conn: duckdb.DuckDBPyConnection, outcome: ErasureOutcome, screened_through: int
) -> None:
    """Append the request log, the per-file removals (for the accounting check) and the run's summary."""
    if len(outcome.log):
        conn.register("erasure_log_frame", outcome.log)
        conn.execute("insert into privacy.erasure_log by name select * from erasure_log_frame")
        conn.unregister("erasure_log_frame")
    per_file = outcome.removed[outcome.removed["source_file"].notna()]
    per_file = per_file.groupby(["source_file", "table_name", "reason"], as_index=False)["rows"].sum()
    conn.register("removed_frame", per_file)
    conn.execute(
        "insert into privacy.removed_records select source_file, table_name, reason, rows,"
        " timezone('UTC', current_timestamp) from removed_frame"
    )
    conn.unregister("removed_frame")
    conn.execute(
        "insert into privacy.erasure_runs values (timezone('UTC', current_timestamp), ?, ?, ?, ?, ?)",
        [
            len(outcome.log),
            json.dumps(dict(sorted(outcome.redacted.items()))),
            outcome.export_rows_removed,
            outcome.suppressed,
            screened_through,
        ],
    )


# ---------------------------------------------------------------- Dagster


class ErasureConfig(dg.Config):
    # Where exported audience CSVs are written; empty means `data/exports` beside `data/warehouse`.
    exports_dir: str = ""


def exports_dir_for(settings: Settings, config: ErasureConfig) -> Path:
    return (
        Path(config.exports_dir) if config.exports_dir else settings.warehouse_path.parent.parent / "exports"
    )


def leftovers_check(outcome: ErasureOutcome) -> dg.AssetCheckResult:
    """Blocking: one remaining mention of a person erased now stops the run before anything is rebuilt."""
    return dg.AssetCheckResult(
        check_name="nothing_left_for_erased_identifiers",
        asset_key=ERASURE_LOG,
        passed=outcome.leftovers.empty,
        metadata={
            "requests_processed": len(outcome.log),
            "columns_still_naming_an_erased_person": dg.MetadataValue.json(
                outcome.leftovers.astype({"rows": int}).to_dict("records")
            ),
        },
    )


@dg.asset(
    key=ERASURE_LOG,
    deps=RAW_ASSET_KEYS,
    group_name="landing",
    kinds={"duckdb", "python"},
    check_specs=[dg.AssetCheckSpec("nothing_left_for_erased_identifiers", asset=ERASURE_LOG, blocking=True)],
)
def erasure(context: dg.AssetExecutionContext, huaxiang: HuaxiangResource, config: ErasureConfig):
    """Right to erasure: remove each requested person from every table and export, and keep them out."""
    settings = huaxiang.settings
    with huaxiang.connect() as conn:
        outcome = run_erasure(conn, settings.pii_salt, exports_dir_for(settings, config))
    removed = outcome.removed.groupby(["reason", "table_name"], as_index=False)["rows"].sum()
    context.log.info(
        f"erasure: {len(outcome.log)} request(s), {int(removed['rows'].sum())} row(s) removed, "
        f"{outcome.suppressed} newly landed record(s) suppressed"
    )
    yield dg.MaterializeResult(
        metadata={
            "requests_processed": len(outcome.log),
            "records_suppressed": outcome.suppressed,
            "export_rows_removed": outcome.export_rows_removed,
            "rows_removed": dg.MetadataValue.md(
                removed.to_markdown(index=False) if len(removed) else "Nothing removed."
            ),
            "values_redacted": dg.MetadataValue.json(outcome.redacted),
        }
    )
    yield leftovers_check(outcome)


class ErasureFirstTranslator(DagsterDbtTranslator):
    """Give it to the dbt layer that reads `raw`: its models wait for erasure, so none reads an erased person.

    Deps added here become inputs of the dbt op; adding them afterwards (`map_asset_specs`) shows in the
    graph but does not order execution.
    """

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        return spec.merge_attributes(deps=[ERASURE_LOG]) if unique_id.startswith("model.") else spec


@dg.asset_check(asset=ERASURE_LOG, blocking=True, name="landed_records_balance_after_erasure")
def landed_records_balance_after_erasure(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    """Per file: loaded = still in raw + erased + suppressed; quarantined = still quarantined + removed."""
    with huaxiang.connect() as conn:
        unbalanced = unbalanced_files(conn)
        files = conn.execute("select count(*) from raw.landed_files").fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=unbalanced.empty,
        metadata={
            "files_checked": files,
            "unbalanced_files": dg.MetadataValue.json(unbalanced.to_dict("records")),
        },
    )


def unbalanced_files(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Landed files whose manifest counts differ from the rows still held plus the rows privacy removed."""
    raw_tables = [
        table
        for table in warehouse_tables(conn)
        if table.schema == "raw" and {"source_file", "file_seq"} <= set(table.columns)
    ]
    held = " union all ".join(
        f"select source_file, count(*) as rows from {t.qualified} group by 1" for t in raw_tables
    )
    return conn.execute(
        f"""
        with held as (select source_file, sum(rows) as rows from ({held}) group by 1),
        quarantined as (select source_file, count(*) as rows from quarantine.rejected_records group by 1),
        removed as (
            select source_file,
                   -- only raw tables count: derived tables holding the same records (e.g. the events
                   -- staging table) are cleaned too but must not be counted twice
                   sum(records_removed) filter (where table_name like 'raw.%') as from_raw,
                   sum(records_removed) filter (where table_name = 'quarantine.rejected_records')
                       as from_quarantine
            from privacy.removed_records group by 1
        )
        select f.relative_path, f.records_loaded, coalesce(h.rows, 0)::bigint as still_loaded,
               coalesce(r.from_raw, 0)::bigint as removed_loaded, f.records_quarantined,
               coalesce(q.rows, 0)::bigint as still_quarantined, coalesce(r.from_quarantine, 0)::bigint
                   as removed_quarantined
        from raw.landed_files f
        left join held h on h.source_file = f.relative_path
        left join quarantined q on q.source_file = f.relative_path
        left join removed r on r.source_file = f.relative_path
        where f.records_loaded <> coalesce(h.rows, 0) + coalesce(r.from_raw, 0)
           or f.records_quarantined <> coalesce(q.rows, 0) + coalesce(r.from_quarantine, 0)
        order by 1
        """
    ).df()


@dg.asset_check(asset=PUBLISHED_WAREHOUSE, blocking=True, name="no_raw_pii_in_published_tables")
def no_raw_pii_in_published_tables(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    """Raw phones, ID-card numbers or e-mails in what BI reads fail the run (examples are masked)."""
    with duckdb.connect(str(huaxiang.settings.published_path), read_only=True) as conn:
        findings = scan_for_pii(conn)
    return dg.AssetCheckResult(
        passed=findings.empty,
        metadata={
            "findings": dg.MetadataValue.json(
                findings.astype({"matches": int})
                .assign(examples=findings["examples"].map(list))
                .to_dict("records")
            )
        },
    )


privacy_assets = [erasure]
privacy_checks = [landed_records_balance_after_erasure, no_raw_pii_in_published_tables]
