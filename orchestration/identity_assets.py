"""The identity-resolution asset: a thin shell that reads the identity evidence and writes people."""

import dagster as dg
import duckdb
import pandas as pd

from ml_assets.identity import IdentityConfig, IdentityResult, resolve_identities
from orchestration.resources import HuaxiangResource, naive_utc, table_exists

IDENTITY_TABLES = ("identity_map", "shared_identifiers", "key_history", "merge_audit")


class IdentityResolutionConfig(dg.Config):
    max_user_ids_per_person: int = 1
    max_component_size: int = 200
    max_phone_neighbors: int = 10
    max_device_neighbors: int = 50
    max_openid_neighbors: int = 50
    max_unionid_neighbors: int = 50

    def to_identity_config(self) -> IdentityConfig:
        return IdentityConfig(
            max_user_ids_per_person=self.max_user_ids_per_person,
            max_component_size=self.max_component_size,
            max_neighbors_by_type={
                "phone": self.max_phone_neighbors,
                "anonymous_id": self.max_device_neighbors,
                "openid": self.max_openid_neighbors,
                "unionid": self.max_unionid_neighbors,
            },
        )


def read_previous_map(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame | None:
    if not table_exists(conn, "identity.identity_map"):
        return None
    return conn.execute("select identifier_type, identifier_value, user_key from identity.identity_map").df()


def previous_versions_sql(conn: duckdb.DuckDBPyConnection) -> str:
    """The previous map with its change numbers; a map written before they existed counts as run 0."""
    if not table_exists(conn, "identity.identity_map"):
        return (
            "select null::varchar as identifier_type, null::varchar as identifier_value,"
            " null::varchar as user_key, null::boolean as is_shared, 0 as changed_in_run where false"
        )
    columns = {row[0] for row in conn.execute("describe identity.identity_map").fetchall()}
    version = "changed_in_run" if "changed_in_run" in columns else "0 as changed_in_run"
    return f"select identifier_type, identifier_value, user_key, is_shared, {version} from identity.identity_map"


def versioned_map_sql(previous_sql: str) -> str:
    """`identity_frame` with `changed_in_run`: the run in which the identifier's person (or sharing) last
    changed. Unchanged identifiers keep their number; new or changed ones get one more than any before, so
    incremental models re-attribute exactly the records whose identifiers moved since they were built."""
    return f"""
    with previous as ({previous_sql}),
    this_run as (select coalesce(max(changed_in_run), 0) + 1 as run from previous)
    select new.*,
           case when old.user_key = new.user_key and old.is_shared = new.is_shared then old.changed_in_run
                else (select run from this_run) end as changed_in_run
    from identity_frame as new
    left join previous as old using (identifier_type, identifier_value)
    """


def write_identity(conn: duckdb.DuckDBPyConnection, result: IdentityResult) -> None:
    """Replace the current-state tables and append key history, in one transaction."""
    conn.execute("create schema if not exists identity")
    previous_sql = previous_versions_sql(conn)
    conn.execute("begin transaction")
    try:
        frame = naive_utc(result.identity_map)
        conn.register("identity_frame", frame)
        conn.execute(f"create or replace temp table versioned_map as {versioned_map_sql(previous_sql)}")
        conn.execute("create or replace table identity.identity_map as select * from versioned_map")
        conn.execute("drop table versioned_map")
        conn.unregister("identity_frame")
        for name in ("shared_identifiers", "merge_audit"):
            frame = naive_utc(getattr(result, name))
            conn.register("identity_frame", frame)
            conn.execute(f"create or replace table identity.{name} as select * from identity_frame")
            conn.unregister("identity_frame")
        history = naive_utc(result.key_history)
        conn.register("identity_frame", history)
        conn.execute(
            "create table if not exists identity.key_history as select * from identity_frame where false"
        )
        conn.execute("insert into identity.key_history by name select * from identity_frame")
        conn.unregister("identity_frame")
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            dg.AssetKey(["identity", name]),
            deps=[
                dg.AssetKey(["intermediate", "int_identity_edges"]),
                dg.AssetKey(["intermediate", "int_identity_identifiers"]),
            ],
            group_name="identity",
            kinds={"python", "duckdb"},
        )
        for name in IDENTITY_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec("largest_component_within_bound", asset=dg.AssetKey(["identity", "identity_map"]))
    ],
)
def identity_resolution(
    context: dg.AssetExecutionContext, config: IdentityResolutionConfig, huaxiang: HuaxiangResource
):
    """One user_key per person from every identifier hint, guarded against over-merging, keys kept stable."""
    identity_config = config.to_identity_config()
    with huaxiang.connect() as conn:
        identifiers = conn.execute("select * from intermediate.int_identity_identifiers").df()
        edges = conn.execute("select * from intermediate.int_identity_edges").df()
        previous = read_previous_map(conn)
        run_at = pd.Timestamp(conn.execute("select current_timestamp::timestamp").fetchall()[0][0], tz="UTC")
        result = resolve_identities(identifiers, edges, previous, identity_config, run_at=run_at)
        write_identity(conn, result)
    metrics = result.metrics
    context.log.info(f"identity: {metrics}")
    for name in IDENTITY_TABLES:
        frame = getattr(result, name)
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(["identity", name]),
            metadata={
                "rows": len(frame),
                **({"metrics": dg.MetadataValue.json(metrics)} if name == "identity_map" else {}),
            },
        )
    yield dg.AssetCheckResult(
        check_name="largest_component_within_bound",
        asset_key=dg.AssetKey(["identity", "identity_map"]),
        passed=not metrics.get("largest_component_alert", False),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "largest_component_size": metrics.get("largest_component_size"),
            "bound": identity_config.max_component_size,
            "shared_identifiers": len(result.shared_identifiers),
        },
    )
