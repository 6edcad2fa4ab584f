"""SIGKILL mid-run, a landed file changed after ingestion, a read-only warehouse, a full disk.

One uninterrupted CLI run is the reference. A second warehouse is built by a chain of runs, each killed with
SIGKILL (the whole process group, dbt included) at a different point: inside an ingestion batch, while dbt
builds the marts, inside an ML asset. Before the last run a landed file is corrupted. The finished chain must
equal the reference table by table, with nothing loaded twice and nothing lost. The read-only and disk-full
runs go at the same time as the chain; everything waits for the reference run's dbt parse first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from tests.integration import killable_run as kr

pytestmark = pytest.mark.integration

EVENT_BATCH_LINES = 2_000
APPENDED_MESSAGE_ID = "appended-after-ingestion"
CHANGED_FILE_WARNING = "changed after it was ingested (sha256 differs); it is NOT re-read"


@dataclass
class Kill:
    point: str
    returncode: int
    alive_at_kill: list[tuple[int, str]]
    left_alive: list[tuple[int, str]]
    mismatches: list[str]
    manifest: dict[str, int]
    raw_events: int
    events_loaded_in_manifest: int


@dataclass
class Chain:
    landing: Path
    warehouse: Path
    kills: list[Kill] = field(default_factory=list)
    corrupted: str = ""
    corrupted_sha256: tuple[str, str] = ("", "")
    final: kr.Process | None = None

    def query(self, sql: str, params=None) -> list[tuple]:
        with duckdb.connect(str(self.warehouse), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()


@dataclass
class Background:
    baseline: kr.Baseline
    read_only: kr.Process
    read_only_warehouse: Path
    disk_full: kr.Process | None
    disk_full_audit: Path
    disk_full_skip_reason: str


def shared_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "fault-shared"
    root.mkdir(exist_ok=True)
    return root


def make_read_only_warehouse(folder: Path) -> Path:
    """An existing warehouse from an earlier run, its file and folder then made read-only."""
    from orchestration.landing import ensure_landing_tables

    folder.mkdir(parents=True)
    warehouse = folder / "huaxiang.duckdb"
    with duckdb.connect(str(warehouse)) as conn:
        ensure_landing_tables(conn)
    warehouse.chmod(0o444)
    folder.chmod(0o555)
    return warehouse


def unshare_wrapper(probe_dir: Path) -> tuple[list[str], str]:
    """`unshare` giving the run its own mounts (and, if not root, its own user namespace), or why it can't."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return [], "unshare/mount not installed"
    wrapper = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        wrapper[1:1] = ["--user", "--map-root-user"]
    probe = subprocess.run(
        [*wrapper, "mount", "-t", "tmpfs", "-o", "size=1m", "hx-probe", str(probe_dir)],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return [], f"cannot mount a tmpfs in a private namespace here: {probe.stderr.strip()}"
    return wrapper, ""


@pytest.fixture(scope="module")
def background(tmp_path_factory) -> Background:
    """Start the reference run, then (once its dbt parse is done) the read-only and disk-full runs."""
    root = shared_root(tmp_path_factory)
    baseline = kr.start_baseline(root)
    kr.manifest_is_prepared(baseline)

    here = tmp_path_factory.mktemp("failures")
    read_only_warehouse = make_read_only_warehouse(here / "read-only" / "warehouse")
    read_only = kr.start_killable(
        baseline.landing,
        read_only_warehouse,
        baseline.as_of,
        here / "read-only",
        "run",
        "--skip-prepare",
        preexec_fn=kr.drop_permission_override if os.geteuid() == 0 else None,
    )

    (here / "mount-probe").mkdir()
    wrapper, skip_reason = unshare_wrapper(here / "mount-probe")
    audit = here / "disk-full" / "audit.json"
    disk_full = None
    if wrapper:
        disk_full = kr.start_killable(
            baseline.landing,
            here / "disk-full" / "warehouse" / "huaxiang.duckdb",
            baseline.as_of,
            here / "disk-full",
            "run",
            "--skip-prepare",
            "--tmpfs-size",
            "2m",
            "--parent-mount-namespace",
            os.readlink("/proc/self/ns/mnt"),
            "--audit-to",
            str(audit),
            wrapper=wrapper,
        )
    yield Background(baseline, read_only, read_only_warehouse, disk_full, audit, skip_reason)
    read_only_warehouse.parent.chmod(0o755)
    read_only_warehouse.chmod(0o644)


def kill_at(chain: Chain, point: str, log_dir: Path, as_of: str) -> Kill:
    """Run until `point`, SIGKILL the process group there, and record what the warehouse holds afterwards."""
    marker = log_dir / f"{point}.reached"
    process = kr.start_killable(
        chain.landing,
        chain.warehouse,
        as_of,
        log_dir,
        point,
        "--skip-prepare",
        "--event-batch-lines",
        str(EVENT_BATCH_LINES),
        "--pause-at",
        point,
        "--marker",
        str(marker),
    )
    kr.wait_for_file(marker, process)
    alive = kr.kill_group(process)
    with duckdb.connect(str(chain.warehouse), read_only=True) as conn:
        manifest = kr.manifest_counts(conn)
        mismatches = kr.accounting_mismatches(conn)
        raw_events = conn.execute("select count(*) from raw.events").fetchall()[0][0]
        loaded = conn.execute(
            "select coalesce(sum(records_loaded), 0) from raw.landed_files where folder = 'events'"
        ).fetchall()[0][0]
    return Kill(
        point,
        process.popen.returncode,
        alive,
        kr.group_members(process.pid),
        mismatches,
        manifest,
        raw_events,
        int(loaded),
    )


def corrupt(path: Path) -> None:
    """Damage a landed file in place and append a valid event, so a re-read would show in raw.events."""
    data = bytearray(path.read_bytes())
    data[:9] = b"CORRUPTED"
    event = {
        "messageId": APPENDED_MESSAGE_ID,
        "type": "track",
        "event": "Product Viewed",
        "userId": "u-appended",
        "timestamp": "2026-06-01T10:00:00+08:00",
        "properties": {},
    }
    path.write_bytes(bytes(data) + (json.dumps(event) + "\n").encode())


@pytest.fixture(scope="module")
def chain(background, tmp_path_factory) -> Chain:
    """Kill a run at each point in turn, corrupt an ingested file, then let the last run finish."""
    root = tmp_path_factory.mktemp("chain")
    landing = root / "landing"
    shutil.copytree(background.baseline.landing, landing)
    chain = Chain(landing, root / "warehouse" / "huaxiang.duckdb")
    as_of = background.baseline.as_of
    for point in kr.PAUSE_POINTS:
        chain.kills.append(kill_at(chain, point, root / "logs", as_of))

    first_events_file = chain.query(
        "select relative_path from raw.landed_files where folder = 'events' order by file_seq limit 1"
    )[0][0]
    original_sha = kr.sha256_of(landing / first_events_file)
    corrupt(landing / first_events_file)
    chain.corrupted = first_events_file
    chain.corrupted_sha256 = (original_sha, kr.sha256_of(landing / first_events_file))

    chain.final = kr.start_killable(
        landing,
        chain.warehouse,
        as_of,
        root / "logs",
        "final",
        "--skip-prepare",
        "--event-batch-lines",
        str(EVENT_BATCH_LINES),
    )
    chain.final.wait()
    return chain


@pytest.fixture(scope="module")
def baseline(background, tmp_path_factory) -> kr.Baseline:
    return kr.finished_baseline(shared_root(tmp_path_factory))


# ---------------------------------------------------------------- SIGKILL


def test_each_kill_point_was_reached_and_the_whole_group_died(chain):
    assert [k.point for k in chain.kills] == list(kr.PAUSE_POINTS)
    for kill in chain.kills:
        assert kill.returncode == -signal.SIGKILL, kill.point
        assert kill.left_alive == [], kill.point
    dbt_kill = chain.kills[kr.PAUSE_POINTS.index("dbt-marts-building")]
    dbt_children = [cmd for _, cmd in dbt_kill.alive_at_kill if re.search(r"\bdbt\b", cmd)]
    assert dbt_children, f"dbt was not running when killed: {dbt_kill.alive_at_kill}"


def test_a_kill_inside_an_ingestion_batch_keeps_the_committed_batch_and_drops_the_open_one(chain, baseline):
    kill = chain.kills[kr.PAUSE_POINTS.index("event-batch-2-uncommitted")]
    events_files = sum(1 for f in baseline.truth["files"] if f.startswith("events/"))
    assert 0 < kill.manifest.get("events", 0) < events_files
    assert kill.raw_events == kill.events_loaded_in_manifest > 0
    assert kill.mismatches == []


def test_every_kill_leaves_each_file_fully_loaded_or_not_at_all(chain):
    for kill in chain.kills:
        assert kill.mismatches == [], kill.point


def test_the_resumed_run_succeeds(chain):
    assert chain.final.popen.returncode == 0, chain.final.stdout() + chain.final.tail()


def test_the_resumed_warehouse_equals_the_uninterrupted_one(chain, baseline):
    expected = kr.database_fingerprints(baseline.warehouse)
    got = kr.database_fingerprints(chain.warehouse)
    changed_files = got.pop("raw.changed_files")
    assert changed_files[0] == 1  # the corrupted file, checked below
    assert expected.pop("raw.changed_files")[0] == 0
    assert set(got) == set(expected)
    assert {t: v for t, v in got.items() if v != expected[t]} == {}


def test_the_resumed_published_copy_equals_the_uninterrupted_one(chain, baseline):
    published = chain.warehouse.with_name("huaxiang_published.duckdb")
    expected = kr.database_fingerprints(baseline.published, ("marts", "quarantine"))
    assert expected and kr.database_fingerprints(published, ("marts", "quarantine")) == expected


def test_nothing_is_loaded_twice(chain, baseline):
    assert chain.query("select count(*) = count(distinct message_id) from raw.events") == [(True,)]
    assert chain.query("select count(*) = count(distinct event_id) from marts.fct_events") == [(True,)]
    files = chain.query("select count(*), count(distinct relative_path) from raw.landed_files")[0]
    assert files == (len(baseline.truth["files"]), len(baseline.truth["files"]))
    assert chain.query("select count(*) from raw.events")[0][0] == baseline.truth["unique_events"]


def test_nothing_is_lost_every_file_matches_the_generators_truth(chain, baseline):
    manifest = {
        row[0]: row[1:]
        for row in chain.query(
            "select relative_path, records_read, records_loaded, records_quarantined, records_duplicate"
            " from raw.landed_files"
        )
    }
    lost = 0
    for path, planted in baseline.truth["files"].items():
        read, loaded, quarantined, duplicates = manifest[path]
        expected = (planted["lines"], planted["bad"], planted["duplicates"])
        assert (read, quarantined, duplicates) == expected, path
        lost += planted["lines"] - (loaded + quarantined + duplicates)
    assert lost == 0


# ---------------------------------------------------------------- a landed file changed after ingestion


def test_a_file_changed_after_ingestion_is_reported_not_reread(chain):
    original_sha, found_sha = chain.corrupted_sha256
    assert chain.query("select relative_path, ingested_sha256, found_sha256 from raw.changed_files") == [
        (chain.corrupted, original_sha, found_sha)
    ]
    assert CHANGED_FILE_WARNING in chain.final.stderr()
    assert f"{chain.corrupted} changed after it was ingested" in chain.final.stderr()
    loaded = chain.query(
        "select records_loaded from raw.landed_files where relative_path = ?", [chain.corrupted]
    )[0][0]
    count_rows = "select count(*) from raw.events where {} = ?"
    assert chain.query(count_rows.format("source_file"), [chain.corrupted]) == [(loaded,)]
    assert chain.query(count_rows.format("message_id"), [APPENDED_MESSAGE_ID]) == [(0,)]


# ---------------------------------------------------------------- the run report


def test_the_run_report_shows_rows_per_layer_quarantine_reasons_checks_and_timings(baseline):
    report = baseline.process.stdout()
    assert "=== Huaxiang run SUCCESS" in report
    with duckdb.connect(str(baseline.warehouse), read_only=True) as conn:
        counts = {
            table: conn.execute(f"select count(*) from {table}").fetchall()[0][0]
            for table in ("raw.events", "raw.orders", "identity.identity_map", "marts.user_profile")
        }
        reasons = conn.execute(
            "select source, reason, count(*) from quarantine.rejected_records group by all"
        ).fetchall()
    rows_section = report.split("rows by layer:")[1].split("\n\n")[0]
    for table, count in counts.items():
        assert re.search(rf"^\s+{re.escape(table)}\s+{count:,}$", rows_section, re.M), table
    reasons_section = report.split("quarantined records by reason:")[1].split("\n\n")[0]
    assert len(reasons) > 3
    for source, reason, count in reasons:
        assert re.search(rf"^\s+{count:,}\s+{source}\s+{re.escape(reason)}$", reasons_section, re.M), reason
    malformed = [c for s, r, c in reasons if r.startswith("malformed JSON")]
    assert malformed == [baseline.truth["bad_records"]["truncated_json"]]
    checks = re.search(r"^checks: (.+)$", report, re.M).group(1)
    assert re.search(r"\b\d+ passed\b", checks) and "failed (ERROR)" not in checks
    timings = report.split("slowest steps:")[1].split("\n\n")[0].strip().splitlines()
    assert timings and all(re.fullmatch(r"\s*\d+\.\ds\s+\w+", line) for line in timings)
    assert any("dbt_" in line for line in timings)


# ---------------------------------------------------------------- read-only warehouse, full disk


READ_ONLY_MESSAGE = "Cannot write the warehouse {path}: the file or its folder is read-only"
DISK_FULL_MESSAGE = "The disk holding the warehouse {path} is full"


def finished(process: kr.Process) -> tuple[int, str, str]:
    return process.wait(), process.stdout(), process.stderr()


def test_a_read_only_warehouse_fails_the_run_with_a_clear_message(background):
    """The CLI checks the warehouse before starting the job, so nothing runs and nothing is written."""
    code, stdout, stderr = finished(background.read_only)
    assert code != 0
    assert READ_ONLY_MESSAGE.format(path=background.read_only_warehouse) in stdout + stderr
    with duckdb.connect(str(background.read_only_warehouse), read_only=True) as conn:
        assert conn.execute("select count(*) from raw.landed_files").fetchall() == [(0,)]


def test_a_read_only_warehouse_is_reported_once_without_stack_traces(background):
    code, stdout, stderr = finished(background.read_only)
    output = stdout + stderr
    assert code == 2
    assert output.count(READ_ONLY_MESSAGE.format(path=background.read_only_warehouse)) == 1
    assert "Stack Trace" not in output and "Traceback" not in output


@pytest.fixture(scope="module")
def disk_full(background) -> tuple[int, str, str, dict]:
    if background.disk_full is None:
        pytest.skip(background.disk_full_skip_reason)
    code, stdout, stderr = finished(background.disk_full)
    assert background.disk_full_audit.exists(), stderr[-3000:]
    return code, stdout, stderr, json.loads(background.disk_full_audit.read_text())


def test_a_full_disk_fails_the_run_with_a_clear_message(disk_full):
    code, stdout, stderr, _ = disk_full
    assert code == 1
    assert "=== Huaxiang run FAILED" in stdout
    assert "No space left on device" in stderr
    assert "WarehouseError: The disk holding the warehouse" in stderr
    assert "cannot rollback - no transaction is active" not in stderr


def test_a_full_disk_leaves_no_half_loaded_file(disk_full):
    *_, audit = disk_full
    assert audit["mismatches"] == []
    assert sum(audit["files"].values()) > 0  # some folders fitted before the disk filled


def test_a_full_disk_is_explained_in_the_run_summary(disk_full, background):
    _, stdout, _, _ = disk_full
    warehouse = background.disk_full_audit.parent / "warehouse" / "huaxiang.duckdb"
    assert DISK_FULL_MESSAGE.format(path=warehouse) in stdout


def test_a_warehouse_folder_that_cannot_be_created_is_a_warehouse_error(tmp_path):
    read_only_parent = tmp_path / "read-only-parent"
    read_only_parent.mkdir()
    read_only_parent.chmod(0o555)
    warehouse = read_only_parent / "missing" / "huaxiang.duckdb"
    snippet = (
        "from orchestration.resources import HuaxiangResource, WarehouseError\n"
        f"resource = HuaxiangResource(landing_dir='.', warehouse_path={str(warehouse)!r})\n"
        "try:\n"
        "    with resource.connect():\n"
        "        pass\n"
        "except WarehouseError as error:\n"
        "    print(error)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", snippet],
            cwd=kr.REPO_ROOT,
            env=kr.subprocess_environment(),
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=kr.drop_permission_override if os.geteuid() == 0 else None,
        )
    finally:
        read_only_parent.chmod(0o755)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(READ_ONLY_MESSAGE.format(path=warehouse)), result.stdout
