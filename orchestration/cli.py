"""`huaxiang`: generate sample data, run the pipeline in process, print what it did."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

from orchestration.settings import Settings, apply_settings, load_settings


def _settings_from_args(args: argparse.Namespace) -> Settings:
    if getattr(args, "landing", None):
        os.environ["HUAXIANG_LANDING_DIR"] = str(Path(args.landing).resolve())
    if getattr(args, "warehouse", None):
        os.environ["HUAXIANG_WAREHOUSE"] = str(Path(args.warehouse).resolve())
    if getattr(args, "as_of", None):
        os.environ["HUAXIANG_AS_OF"] = args.as_of
    settings = load_settings()
    apply_settings(settings)
    return settings


MANIFEST_STAMP = ".huaxiang-manifest-stamp"
NOT_PROJECT_SOURCES = ("target", "logs", "dbt_packages")


def manifest_stamp() -> str:
    """What the parsed manifest depends on besides the project files: the dbt target and dbt's version."""
    from dbt.version import __version__ as dbt_version

    return f"target={os.environ.get('HUAXIANG_ENGINE', 'duckdb')} dbt={dbt_version}\n"


def manifest_is_current(project_dir: Path, stamp: str) -> bool:
    """True when target/manifest.json is newer than every project file and was parsed for the same stamp."""
    target = project_dir / "target"
    manifest, stamp_file = target / "manifest.json", target / MANIFEST_STAMP
    if not manifest.is_file() or not stamp_file.is_file() or stamp_file.read_text() != stamp:
        return False
    parsed_at = manifest.stat().st_mtime
    sources = (
        path
        for path in project_dir.rglob("*")
        if path.is_file() and path.relative_to(project_dir).parts[0] not in NOT_PROJECT_SOURCES
    )
    return all(path.stat().st_mtime < parsed_at for path in sources)


def prepare_dbt_manifest() -> None:
    """`@dbt_assets` needs manifest.json at import time; outside `dagster dev` nobody else makes it.

    `dbt parse` costs several seconds per CLI call, so it runs only when a project file changed since the
    last parse (every `dbt build` dagster-dbt starts parses again anyway, with dbt's partial parsing).
    """
    from orchestration.project import huaxiang_dbt_project

    stamp = manifest_stamp()
    if manifest_is_current(huaxiang_dbt_project.project_dir, stamp):
        return
    # dbt is installed beside this interpreter; find it even when the virtualenv is not activated.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"

    huaxiang_dbt_project.preparer.prepare(huaxiang_dbt_project)
    (huaxiang_dbt_project.project_dir / "target" / MANIFEST_STAMP).write_text(stamp)


def persistent_instance():
    """The Dagster instance in $DAGSTER_HOME (created on first use), so CLI runs show up in `make ui`."""
    import dagster as dg

    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return dg.DagsterInstance.get()


def full_refresh_run_config() -> dict:
    """Run config that makes every dbt layer rebuild its incremental models from scratch."""
    from orchestration.dbt_assets import DBT_LAYERS

    return {"ops": {layer: {"config": {"full_refresh": True}} for layer in DBT_LAYERS}}


def run_pipeline(settings: Settings, full_refresh: bool = False):
    """Materialize every asset once, in process, with all checks; returns the Dagster result."""
    import dagster as dg

    apply_settings(settings)
    prepare_dbt_manifest()
    from orchestration.definitions import build_definitions

    job = build_definitions(settings).resolve_job_def("daily_refresh_job")
    instance = persistent_instance() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    return job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=full_refresh_run_config() if full_refresh else None
    )


def command_generate(args: argparse.Namespace) -> int:
    from orchestration.generator import generate

    summary = generate(
        people=args.people,
        seed=args.seed,
        out=Path(args.out),
        start=date.fromisoformat(args.start),
        end=date.fromisoformat(args.end),
        progress=not args.quiet,
    )
    print(f"generated {summary.people} people into {summary.out} (as-of {summary.as_of})")
    return 0


def command_run(args: argparse.Namespace) -> int:
    from orchestration.privacy import DevSaltError, check_salt

    settings = _settings_from_args(args)
    try:
        check_salt(settings)
    except DevSaltError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not settings.landing_dir.is_dir():
        print(f"error: landing directory {settings.landing_dir} does not exist", file=sys.stderr)
        return 2
    from orchestration.resources import HuaxiangResource, WarehouseError

    try:  # a locked, read-only or unreachable warehouse gets one clear message, not a stack per step
        with HuaxiangResource.from_settings(settings).connect():
            pass
    except WarehouseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result = run_pipeline(settings, full_refresh=getattr(args, "full_refresh", False))
    from orchestration.summary import print_summary

    print_summary(settings, result, time.perf_counter() - started)
    return 0 if result.success else 1


def command_demo(args: argparse.Namespace) -> int:
    from orchestration.generator import generate

    landing = Path(args.landing or "data/landing").resolve()
    if args.regenerate or not any(landing.glob("*/**/*")):
        summary = generate(people=args.people, seed=args.seed, out=landing, progress=True, overwrite=True)
        as_of = summary.as_of.isoformat()
    else:
        import json

        as_of = json.loads((landing / "_truth" / "summary.json").read_text())["as_of"]
    args.landing = str(landing)
    args.as_of = args.as_of or as_of
    return command_run(args)


def command_export_audience(args: argparse.Namespace) -> int:
    import duckdb

    from orchestration.activation import DEFAULT_EXPORT_DIR, UnknownAudienceError, export_audience

    settings = _settings_from_args(args)
    # The published copy is never locked by a running refresh; before the first publish use the working file.
    source = settings.published_path if settings.published_path.exists() else settings.warehouse_path
    if not source.exists():
        print(f"error: no warehouse at {source}; run `huaxiang run` first", file=sys.stderr)
        return 2
    with duckdb.connect(str(source), read_only=True) as conn:
        try:
            path = export_audience(conn, args.name, Path(args.out) if args.out else DEFAULT_EXPORT_DIR)
        except UnknownAudienceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    rows = len(path.read_text(encoding="utf-8").splitlines()) - 1
    print(f"exported {rows} treatment members of {args.name} to {path} (control group held out)")
    return 0


def command_prepare(args: argparse.Namespace) -> int:
    _settings_from_args(args)
    prepare_dbt_manifest()
    print("dbt manifest ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huaxiang", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="write a realistic sample landing directory")
    generate.add_argument("--people", type=int, default=10_000)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--out", default="data/landing")
    generate.add_argument("--start", default="2025-01-01")
    generate.add_argument("--end", default="2026-06-30")
    generate.add_argument("--quiet", action="store_true")
    generate.set_defaults(handler=command_generate)

    prepare = commands.add_parser("prepare", help="parse the dbt project (needed before `dagster dev`)")
    prepare.set_defaults(handler=command_prepare)

    for name, handler, help_text in (
        ("run", command_run, "materialize every asset once, in process, with all checks"),
        ("demo", command_demo, "generate the sample data set (if absent), then run on it"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--landing", help="landing directory (HUAXIANG_LANDING_DIR)")
        sub.add_argument("--warehouse", help="warehouse DuckDB file (HUAXIANG_WAREHOUSE)")
        sub.add_argument("--as-of", dest="as_of", help="YYYY-MM-DD used as 'today' (HUAXIANG_AS_OF)")
        sub.add_argument(
            "--full-refresh",
            action="store_true",
            help="rebuild the incremental dbt models (events, orders) from every landed record",
        )
        sub.set_defaults(handler=handler)
        if name == "demo":
            sub.add_argument("--people", type=int, default=10_000)
            sub.add_argument("--seed", type=int, default=7)
            sub.add_argument("--regenerate", action="store_true", help="regenerate even if data exists")
    export = commands.add_parser("export-audience", help="write an audience's treatment members to CSV for upload")
    export.add_argument("name", help="audience name from catalogue/audiences.yml")
    export.add_argument("--out", help="folder for <audience>_<as_of>.csv (default data/exports)")
    export.add_argument("--warehouse", help="warehouse DuckDB file (HUAXIANG_WAREHOUSE)")
    export.set_defaults(handler=command_export_audience)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "as_of", None):
        date.fromisoformat(args.as_of)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
