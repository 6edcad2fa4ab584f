"""One Dagster asset per landing folder: ingest new files into `raw.<folder>`."""

import dagster as dg
from tqdm import tqdm

from orchestration.landing import CSV_SOURCES, LANDING_FOLDERS, IngestResult, ingest_folder
from orchestration.resources import HuaxiangResource

FOLDER_DESCRIPTIONS = {
    "events": "Tracking calls (Segment spec JSON Lines) from the mini-program SDK and other channels.",
    **{
        folder: f"CRM export `{folder}/*.csv` ({', '.join(c.name for c in s.columns)})."
        for folder, s in CSV_SOURCES.items()
    },
}


def ingest_metadata(result: IngestResult) -> dict[str, dg.MetadataValue]:
    """Counts, per-file accounting and files that changed after ingestion, for the asset's page."""
    totals = result.totals()
    rows = [
        f"| {f.relative_path} | {f.read} | {f.loaded} | {f.quarantined} | {f.duplicates} | {f.note or ''} |"
        for f in result.files[:200]
    ]
    table = "\n".join(
        ["| file | read | loaded | quarantined | duplicates | note |", "|---|---|---|---|---|---|", *rows]
    )
    if len(result.files) > 200:
        table += f"\n\n... and {len(result.files) - 200} more files (see `raw.landed_files`)."
    return {
        **{name: dg.MetadataValue.int(value) for name, value in totals.items()},
        "accounting_balanced": dg.MetadataValue.bool(all(f.balanced for f in result.files)),
        "files": dg.MetadataValue.md(table if result.files else "No new files."),
        "changed_after_ingestion": dg.MetadataValue.json(result.changed_files),
    }


class LandingConfig(dg.Config):
    # A new file with more than this share of rejected records stops the run before anything is published.
    max_quarantine_share: float = 0.5


def quarantine_check(result: IngestResult, folder: str, max_share: float) -> dg.AssetCheckResult:
    """A file that is mostly rejected means a broken export, not a few bad records: stop publication."""
    too_bad = [
        (f.relative_path, f.quarantined, f.read)
        for f in result.files
        if f.read and f.quarantined / f.read > max_share
    ]
    return dg.AssetCheckResult(
        check_name="quarantine_share_within_bound",
        asset_key=dg.AssetKey(["raw", folder]),
        passed=not too_bad,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "max_quarantine_share": max_share,
            "files_over_bound": dg.MetadataValue.json([list(f) for f in too_bad]),
        },
    )


def build_landing_asset(folder: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["raw", folder]),
        group_name="landing",
        kinds={"duckdb", "python"},
        description=FOLDER_DESCRIPTIONS[folder],
        check_specs=[
            dg.AssetCheckSpec(
                "quarantine_share_within_bound", asset=dg.AssetKey(["raw", folder]), blocking=True
            )
        ],
    )
    def _ingest(context: dg.AssetExecutionContext, huaxiang: HuaxiangResource, config: LandingConfig):
        settings = huaxiang.settings
        with huaxiang.connect() as conn, tqdm(desc=f"landing {folder}", unit="file", leave=False) as bar:
            result = ingest_folder(
                conn, settings.landing_dir, folder, settings.pii_salt, lambda _: bar.update()
            )
        for path in result.changed_files:
            context.log.warning(
                f"{path} changed after it was ingested (sha256 differs); it is NOT re-read. "
                "Land corrections as a new file. Recorded in raw.changed_files."
            )
        context.log.info(f"{folder}: {result.totals()}")
        yield dg.MaterializeResult(metadata=ingest_metadata(result))
        yield quarantine_check(result, folder, config.max_quarantine_share)

    return _ingest


@dg.asset_check(asset=dg.AssetKey(["raw", "events"]), blocking=True, name="every_landed_record_accounted_for")
def every_landed_record_accounted_for(huaxiang: HuaxiangResource) -> dg.AssetCheckResult:
    """read = loaded + quarantined + duplicates for every file ever ingested (all folders)."""
    with huaxiang.connect() as conn:
        broken = conn.execute(
            """
            select relative_path, records_read, records_loaded, records_quarantined, records_duplicate
            from raw.landed_files
            where records_read <> records_loaded + records_quarantined + records_duplicate
            """
        ).fetchall()
        files = conn.execute("select count(*) from raw.landed_files").fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=not broken,
        metadata={
            "files_checked": files,
            "unbalanced_files": dg.MetadataValue.json([list(b) for b in broken]),
        },
    )


landing_assets = [build_landing_asset(folder) for folder in LANDING_FOLDERS]
