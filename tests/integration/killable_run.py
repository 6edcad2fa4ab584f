"""A `huaxiang run` that stops at a chosen point so a test can SIGKILL it there; helpers for the fault tests.

Run as a script (`python -m tests.integration.killable_run run ...`) it is the CLI's own `run` command
(orchestration.cli.main) with three test-only hooks:
- `--pause-at POINT` writes `--marker` when the run reaches POINT and (for most points) then sleeps, so the
  test kills the process group at exactly that point instead of after a guessed delay;
- `--event-batch-lines N` makes ingestion commit every N lines, so a run has many batches to die between;
- `--skip-prepare` reuses the dbt manifest another run already parsed (each parse costs 10-40 s).
`publish` runs publish_snapshot alone with a pause point; `hold` is a BI tool keeping a connection open.

Imported by the tests, it provides the shared baseline run and the warehouse fingerprints and audits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parents[2]
PEOPLE = 250
SEED = 23
SALT = "fault-tolerance-test-salt"
# Columns holding the wall-clock time of a run, not data: they differ between any two runs.
RUN_TIME_COLUMNS = frozenset({"ingested_at", "rejected_at", "detected_at", "changed_at"})
COMPARED_SCHEMAS = ("raw", "marts", "quarantine")
PAUSE_POINTS = ("event-batch-2-uncommitted", "dbt-marts-building", "user-clusters-written")
RUN_TIMEOUT_SECONDS = 1200


# ---------------------------------------------------------------- pause points (inside the run process)


def reach(marker: Path, point: str, pause: bool) -> None:
    """Tell the test the run is at `point` (atomically), then wait there to be killed."""
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(point)
    partial.rename(marker)
    while pause:
        time.sleep(3600)


def pause_in_second_event_batch(marker: Path) -> None:
    """Stop after the second event batch's rows are inserted but before its transaction commits."""
    from orchestration import landing

    original = landing._load_event_rows
    calls = {"n": 0}

    def load_then_maybe_stop(conn):
        counts = original(conn)
        calls["n"] += 1
        if calls["n"] == 2:
            reach(marker, "event-batch-2-uncommitted", pause=True)
        return counts

    landing._load_event_rows = load_then_maybe_stop


def mark_when_dbt_builds_a_mart(marker: Path) -> None:
    """Signal (without pausing: dbt keeps running in its child process) once dbt has built its first mart."""
    from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation

    original = DbtCliInvocation.stream

    def stream(self):
        for event in original(self):
            if getattr(event, "output_name", "").startswith("marts__") and not marker.exists():
                reach(marker, "dbt-marts-building", pause=False)
            yield event

    DbtCliInvocation.stream = stream


def pause_after_user_clusters_written(marker: Path) -> None:
    """Stop inside the user_clusters asset once it committed its assignments and its model, before it returns."""
    from contextlib import contextmanager

    from orchestration import ml_models

    original = ml_models.batch_writer

    @contextmanager
    def write_then_maybe_stop(conn):
        written = []
        with original(conn) as writer:
            append = writer.append

            def recording_append(table, frame):
                append(table, frame)
                written.append(table)

            writer.append = recording_append
            yield writer
        if "ml.cluster_models" in written:
            reach(marker, "user-clusters-written", pause=True)

    ml_models.batch_writer = write_then_maybe_stop


INSTALLERS = {
    "event-batch-2-uncommitted": pause_in_second_event_batch,
    "dbt-marts-building": mark_when_dbt_builds_a_mart,
    "user-clusters-written": pause_after_user_clusters_written,
}


def use_event_batch_lines(lines: int) -> None:
    """The landing asset passes no batch size, so bind one into the function it calls."""
    from orchestration import landing, landing_assets

    landing_assets.ingest_folder = functools.partial(landing.ingest_folder, batch_lines=lines)


def mount_tmpfs(directory: Path, size: str, parent_mount_namespace: str) -> None:
    """Mount a small tmpfs on the warehouse folder; refuses unless this process has its own mounts."""
    if os.readlink("/proc/self/ns/mnt") == parent_mount_namespace:
        raise SystemExit("refusing to mount: not in a private mount namespace (run under `unshare --mount`)")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "hx-test", str(directory)], check=True)


def command_run(args: argparse.Namespace) -> int:
    from orchestration import cli

    if args.tmpfs_size:
        mount_tmpfs(Path(args.warehouse).parent, args.tmpfs_size, args.parent_mount_namespace)
    if args.skip_prepare:
        cli.prepare_dbt_manifest = lambda: None
    if args.event_batch_lines:
        use_event_batch_lines(args.event_batch_lines)
    if args.pause_at:
        INSTALLERS[args.pause_at](Path(args.marker))
    code = cli.main(["run", "--landing", args.landing, "--warehouse", args.warehouse, "--as-of", args.as_of])
    if args.audit_to:
        # The disk-full case: free space, then audit what the failed run left in the warehouse.
        mount = Path(args.warehouse).parent
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        with duckdb.connect(args.warehouse, read_only=True) as conn:
            audit = {"mismatches": accounting_mismatches(conn), "files": manifest_counts(conn)}
        Path(args.audit_to).write_text(json.dumps(audit))
    return code


class PausingConnection:
    """A warehouse connection that stops the process after the N-th table is copied into the new snapshot."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, after_tables: int, marker: Path):
        self.conn, self.after_tables, self.marker, self.copied = conn, after_tables, marker, 0

    def execute(self, sql: str, *params):
        result = self.conn.execute(sql, *params)
        if sql.startswith("create table publish_target."):
            self.copied += 1
            if self.copied == self.after_tables:
                reach(self.marker, f"publish-after-{self.copied}-tables", pause=True)
        return result


def command_publish(args: argparse.Namespace) -> int:
    from orchestration.serving import publish_snapshot

    with duckdb.connect(args.warehouse) as conn:
        target = (
            conn
            if not args.pause_after_tables
            else PausingConnection(conn, args.pause_after_tables, Path(args.marker))
        )
        counts = publish_snapshot(target, Path(args.target))
    print(json.dumps(counts))
    return 0


def command_hold(args: argparse.Namespace) -> int:
    """A BI tool holding a read-only connection; each input line asks what it sees now.

    `look`: through the held connection. `reopen`: through a second connection opened while the first is
    still held. `reconnect`: close the held connection, open a new one and keep that.
    """
    conn = duckdb.connect(args.database, read_only=True)
    print(json.dumps(snapshot_signature(conn)), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reopen":
            with duckdb.connect(args.database, read_only=True) as second:
                seen = snapshot_signature(second)
        else:
            if command == "reconnect":
                conn.close()
                conn = duckdb.connect(args.database, read_only=True)
            seen = snapshot_signature(conn)
        print(json.dumps(seen), flush=True)
    conn.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="killable_run", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--landing", required=True)
    run.add_argument("--warehouse", required=True)
    run.add_argument("--as-of", dest="as_of", required=True)
    run.add_argument("--pause-at", choices=PAUSE_POINTS)
    run.add_argument("--marker")
    run.add_argument("--event-batch-lines", type=int, default=0)
    run.add_argument("--skip-prepare", action="store_true")
    run.add_argument("--tmpfs-size", help="mount a tmpfs this big on the warehouse folder (disk-full test)")
    run.add_argument("--parent-mount-namespace", default="")
    run.add_argument("--audit-to", help="after the run, enlarge the tmpfs and write an accounting audit here")
    run.set_defaults(handler=command_run)
    publish = commands.add_parser("publish")
    publish.add_argument("--warehouse", required=True)
    publish.add_argument("--target", required=True)
    publish.add_argument("--pause-after-tables", type=int, default=0)
    publish.add_argument("--marker")
    publish.set_defaults(handler=command_publish)
    hold = commands.add_parser("hold")
    hold.add_argument("--database", required=True)
    hold.set_defaults(handler=command_hold)
    return parser


# ---------------------------------------------------------------- what the tests compare


def compared_columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    """Every column except run times, floats at 7 significant digits (float32), decimals in text at 6 places.

    DuckDB's parallel sums and averages add in a different order on every run, so doubles (and the JSON
    text some assets write them into) can differ in their last bits between any two runs, killed or not.
    """
    columns = conn.execute(
        "select column_name, data_type from information_schema.columns"
        " where table_catalog = current_database() and table_schema = ? and table_name = ?"
        " order by ordinal_position",
        [schema, table],
    ).fetchall()
    return [
        compared_expression(name, data_type) for name, data_type in columns if name not in RUN_TIME_COLUMNS
    ]


def compared_expression(name: str, data_type: str) -> str:
    if data_type in ("DOUBLE", "FLOAT"):
        return f'"{name}"::float'
    if data_type in ("VARCHAR", "JSON"):
        return rf"""regexp_replace("{name}"::varchar, '(\.[0-9]{{6}})[0-9]+', '\1', 'g')"""
    return f'"{name}"'


def table_fingerprints(
    conn: duckdb.DuckDBPyConnection, schemas: tuple[str, ...] = COMPARED_SCHEMAS
) -> dict[str, tuple[int, int]]:
    """(row count, order-independent checksum) of every base table in `schemas`."""
    tables = conn.execute(
        "select table_schema, table_name from information_schema.tables"
        " where table_catalog = current_database() and table_type = 'BASE TABLE'"
        " and list_contains(?, table_schema) order by 1, 2",
        [list(schemas)],
    ).fetchall()
    fingerprints = {}
    for schema, table in tables:
        columns = ", ".join(compared_columns(conn, schema, table))
        count, checksum = conn.execute(
            f'select count(*), coalesce(sum(hash({columns})), 0) from "{schema}"."{table}"'
        ).fetchall()[0]
        fingerprints[f"{schema}.{table}"] = (count, int(checksum))
    return fingerprints


def database_fingerprints(path: Path, schemas: tuple[str, ...] = COMPARED_SCHEMAS) -> dict[str, tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return table_fingerprints(conn, schemas)


def snapshot_signature(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every table a BI user sees: enough to tell two snapshots, or a half-built one, apart."""
    tables = conn.execute(
        "select table_schema, table_name from information_schema.tables"
        " where table_catalog = current_database() order by 1, 2"
    ).fetchall()
    return {f"{s}.{t}": conn.execute(f'select count(*) from "{s}"."{t}"').fetchall()[0][0] for s, t in tables}


def manifest_counts(conn: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Files in the manifest per landing folder."""
    return dict(conn.execute("select folder, count(*) from raw.landed_files group by folder").fetchall())


def accounting_mismatches(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Files whose rows in raw/quarantine disagree with their manifest row, and rows of files not in it.

    Empty means every batch was all-or-nothing: no half-loaded file, nothing loaded without a manifest entry.
    """
    folders = [f for (f,) in conn.execute("select distinct folder from raw.landed_files").fetchall()]
    all_folders = [
        t
        for (t,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
            " and table_name not in ('landed_files', 'changed_files')"
        ).fetchall()
    ]
    mismatches = []
    for folder in sorted(set(folders) | set(all_folders)):
        rows = conn.execute(
            f"""
            with loaded as (select source_file, count(*) as n from raw."{folder}" group by 1),
                 rejected as (select source_file, count(*) as n from quarantine.rejected_records
                              where source = ? group by 1),
                 manifest as (select relative_path as source_file, records_loaded, records_quarantined
                              from raw.landed_files where folder = ?)
            select coalesce(m.source_file, l.source_file, r.source_file), m.records_loaded, l.n,
                   m.records_quarantined, r.n
            from manifest m
            full join loaded l using (source_file)
            full join rejected r using (source_file)
            where m.source_file is null
               or m.records_loaded <> coalesce(l.n, 0)
               or m.records_quarantined <> coalesce(r.n, 0)
            """,
            [folder, folder],
        ).fetchall()
        mismatches.extend(f"{folder}: {row}" for row in rows)
    return mismatches


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- running things from the tests


def subprocess_environment() -> dict[str, str]:
    """The caller's environment without settings that would leak into or be shared by the run under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUAXIANG_") and k != "DAGSTER_HOME"}
    env.update(
        {
            "HUAXIANG_PII_SALT": SALT,
            "HUAXIANG_TIMEZONE": "Asia/Shanghai",
            "GX_ANALYTICS_ENABLED": "false",
            "DAGSTER_TELEMETRY_DISABLED": "true",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    return env


@dataclass
class Process:
    """A run in its own process group, its output going to files (a pipe could fill and stall it)."""

    popen: subprocess.Popen
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float = RUN_TIMEOUT_SECONDS) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self)
            raise

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])


def start(argv: list[str], log_dir: Path, name: str, wrapper=(), **popen_options) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        popen = subprocess.Popen(
            [*wrapper, sys.executable, *argv],
            cwd=REPO_ROOT,
            env=subprocess_environment(),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # dbt runs as a child: the kill must reach the whole group
            **popen_options,
        )
    return Process(popen, stdout_path, stderr_path)


def start_killable(
    landing: Path, warehouse: Path, as_of: str, log_dir: Path, name: str, *extra: str, wrapper=(), **options
) -> Process:
    argv = ["-m", "tests.integration.killable_run", "run", "--landing", str(landing)]
    argv += ["--warehouse", str(warehouse), "--as-of", as_of, *extra]
    return start(argv, log_dir, name, wrapper, **options)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """Live (pid, command line) of every process in a process group, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _, pgrp = stat.rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                members.append((int(entry.name), command))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended while we looked
    return members


def kill_group(process: Process) -> list[tuple[int, str]]:
    """SIGKILL the run and its children at once; returns who was alive, and waits until they are gone."""
    alive = group_members(process.pid)
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing left to kill
        os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=60)
    deadline = time.monotonic() + 30
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def wait_for_file(path: Path, process: Process, timeout: float = RUN_TIMEOUT_SECONDS) -> None:
    """Poll for a marker file the run writes; fail with the run's log if it ends or stalls first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.popen.poll() is not None:
            code = process.popen.returncode
            raise AssertionError(f"run ended (code {code}) before {path.name}:\n{process.tail()}")
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError(f"timed out waiting for {path.name}:\n{process.tail()}")
        time.sleep(0.05)


def wait_for_text(process: Process, text: str, timeout: float = RUN_TIMEOUT_SECONDS) -> None:
    """Wait until the run's stderr shows `text` (or the run ends)."""
    deadline = time.monotonic() + timeout
    while text not in process.stderr() and process.popen.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {text!r}:\n{process.tail()}")
        time.sleep(0.2)


def drop_permission_override() -> None:
    """Run as root without CAP_DAC_OVERRIDE/READ_SEARCH, so file modes bind as they would for an operator."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for capability in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


# ---------------------------------------------------------------- the shared uninterrupted run


@dataclass
class Baseline:
    landing: Path
    warehouse: Path
    as_of: str
    truth: dict
    process: Process

    @property
    def published(self) -> Path:
        return self.warehouse.with_name(self.warehouse.stem + "_published.duckdb")


_BASELINES: dict[Path, Baseline] = {}


def generated_landing(root: Path) -> Path:
    """The small generated data set, written once per test session."""
    landing = root / "generated" / "landing"
    if not (landing / "_truth" / "summary.json").exists():
        from orchestration.generator import generate

        shutil.rmtree(landing, ignore_errors=True)
        generate(people=PEOPLE, seed=SEED, out=landing, progress=False)
    return landing


def start_baseline(root: Path) -> Baseline:
    """Start (once per session) the uninterrupted reference run with the real CLI, dbt parse included."""
    if root not in _BASELINES:
        landing = generated_landing(root)
        truth = json.loads((landing / "_truth" / "summary.json").read_text())
        warehouse = root / "baseline" / "warehouse" / "huaxiang.duckdb"
        process = start(
            [
                "-m",
                "orchestration.cli",
                "run",
                "--landing",
                str(landing),
                "--warehouse",
                str(warehouse),
                "--as-of",
                truth["as_of"],
            ],
            root / "baseline",
            "cli",
        )
        _BASELINES[root] = Baseline(landing, warehouse, truth["as_of"], truth, process)
    return _BASELINES[root]


def finished_baseline(root: Path) -> Baseline:
    baseline = start_baseline(root)
    code = baseline.process.wait()
    log = baseline.process.stdout() + baseline.process.tail()
    assert code == 0, f"the reference run failed ({code}):\n{log}"
    return baseline


def manifest_is_prepared(baseline: Baseline) -> None:
    """Other runs may skip the dbt parse once the baseline's CLI has done it (it has started the job)."""
    wait_for_text(baseline.process, "RUN_START")
    if baseline.process.popen.poll() not in (None, 0):
        raise AssertionError(f"the uninterrupted run failed:\n{baseline.process.tail()}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
