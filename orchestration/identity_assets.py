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


def write_identity(conn: duckdb.DuckDBPyConnection, result: IdentityResult) -> None:
    """Replace the current-state tables and append key history, in one transaction."""
    conn.execute("create schema if not exists identity")
    conn.execute("begin transaction")
    try:
        for name in ("identity_map", "shared_identifiers", "merge_audit"):
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
