"""Huaxiang against its floor and a pandas baseline, on the same files, in the same run.

Usage: ``python -m benchmarks.run [--sizes S,M,L] [--cache benchmarks/cache] [--write-docs docs/benchmarks.md]
[--skip pandas] [--profile]``

Per size: generate the sample landing folder once (fixed seed, cached), hold back its newest day, then
measure in separate subprocesses (wall time, peak memory of the process tree, load average around it):
1. Huaxiang full build on a fresh warehouse, as-of the day before the held-back day;
2. Huaxiang daily increment: land the held-back day, re-run with as-of = that day;
3. the lower bound (`benchmarks.lower_bound`: one DuckDB SQL pass);
4. the pandas baseline (`benchmarks.pandas_baseline`).
Per-layer times come from the Dagster run's step statistics (a benchmark-owned DAGSTER_HOME keeps the run
history; the CLI's printed summary only shows the six slowest steps), per-model dbt times from the
`run_results.json` dagster-dbt leaves under `dbt_project/target/<step>-<run id>-*/`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
SEED = 7
HELD_BACK_FOLDERS = ("events", "orders", "order_items")
SAMPLE_SECONDS = 0.2
DOCS_START, DOCS_END = "<!-- bench:start -->", "<!-- bench:end -->"
COMPARED_COLUMNS = (
    "recency_days",
    "frequency",
    "monetary",
    "events",
    "active_days_30",
    "active_days_90",
    "sessions",
    "share_morning",
    "share_evening",
    "content_views",
    "share_video",
)
MEASURED = ("huaxiang_full", "huaxiang_increment", "lower_bound", "pandas")
# What `huaxiang run` reads from the repository; benchmarked from a copy taken when the run starts.
CODE_PATHS = (
    "orchestration",
    "ml_assets",
    "expectations",
    "dbt_project",
    "catalogue",
    "docs",
    "pyproject.toml",
)
NOT_CODE = ("target", "logs", "dbt_packages", "__pycache__", ".user.yml")


@dataclass
class Measurement:
    seconds: float
    peak_tree_mb: float  # sampled sum of RSS over the process and all its descendants
    peak_process_mb: (
        float  # largest single process (kernel's exact ru_maxrss of the child and its waited-for children)
    )
    load_before: float
    load_after: float
    returncode: int
    log: str
    leftover_processes_ended: int = 0
    peak_by_process_mb: dict[str, float] = field(default_factory=dict)


@dataclass
class Dataset:
    size: str
    people: int
    landing: Path
    holdback: Path
    held_back_day: date
    events: int


@dataclass
class SizeResult:
    size: str
    people: int
    events: int
    held_back_day: str
    measurements: dict[str, Measurement] = field(default_factory=dict)
    full_layers: dict[str, float] = field(default_factory=dict)
    increment_layers: dict[str, float] = field(default_factory=dict)
    slowest_models: list[tuple[str, float]] = field(default_factory=list)
    agreement: dict[str, object] = field(default_factory=dict)
    totals: dict[str, dict[str, float]] = field(default_factory=dict)
    measured_at: str = ""


# ---------------------------------------------------------------- measuring a subprocess


def process_label(process: psutil.Process, root_pid: int) -> str:
    """'main' for the measured process, 'dbt' for dbt CLI children, else the executable name."""
    if process.pid == root_pid:
        return "main"
    command = process.cmdline()
    return "dbt" if any(part.endswith("/dbt") or part == "dbt" for part in command[:2]) else process.name()


def tree_rss(process: psutil.Process, descendants: list[psutil.Process]) -> tuple[int, dict[str, int]]:
    """RSS of a process and its descendants right now, in total and per label; members may exit as we look."""
    total, by_label = 0, defaultdict(int)
    for member in (process, *descendants):
        try:
            rss = member.memory_info().rss
            by_label[process_label(member, process.pid)] += rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # it ended between listing and reading: it holds no memory any more
        total += rss
    return total, by_label


def end_leftovers(seen: dict[int, float]) -> int:
    """End descendants that outlived the measured process (e.g. a dbt child of a failed step), by pid."""
    ended = 0
    for pid, created in seen.items():
        try:
            leftover = psutil.Process(pid)
            if leftover.create_time() != created:
                continue  # the pid was reused by an unrelated process
            leftover.terminate()
            leftover.wait(timeout=30)
            ended += 1
        except psutil.NoSuchProcess:
            continue  # it ended on its own, as it should
        except psutil.TimeoutExpired:
            leftover.kill()
            ended += 1
    return ended


def measure(
    command: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> Measurement:
    """Wall time and peak memory of one command run in its own process tree, output kept in a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    peak = 0
    peak_by_label: dict[str, int] = defaultdict(int)
    seen: dict[int, float] = {}  # descendant pid -> create time
    done = threading.Event()
    with log_path.open("w") as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(child.pid)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    descendants = watched.children(recursive=True)
                    total, by_label = tree_rss(watched, descendants)
                    peak = max(peak, total)
                    for label, rss in by_label.items():
                        peak_by_label[label] = max(peak_by_label[label], rss)
                except psutil.NoSuchProcess:
                    return  # the child itself is gone; the last sample stands
                for member in descendants:
                    with contextlib.suppress(psutil.NoSuchProcess):  # gone already: nothing to end later
                        seen.setdefault(member.pid, member.create_time())
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 gives this child's own rusage, so one measurement never sees another's peak.
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    leftovers = end_leftovers(seen)
    if leftovers:
        print(f"ended {leftovers} process(es) left running by {command[:4]}", flush=True)
    return Measurement(
        seconds=round(seconds, 2),
        peak_tree_mb=round(peak / 2**20, 1),
        peak_process_mb=round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        load_before=round(load_before, 2),
        load_after=round(os.getloadavg()[0], 2),
        returncode=child.returncode,
        log=str(log_path),
        leftover_processes_ended=leftovers,
        peak_by_process_mb={label: round(rss / 2**20, 1) for label, rss in peak_by_label.items()},
    )


def snapshot_code(target: Path) -> Path:
    """Copy what `huaxiang run` reads, so edits landing in the repository mid-run cannot mix two versions."""
    shutil.rmtree(target, ignore_errors=True)
    for name in CODE_PATHS:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns(*NOT_CODE))
        elif source.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


# ---------------------------------------------------------------- data sets


def day_files(landing: Path, day: date) -> list[Path]:
    """The files of one day in the day-partitioned folders (events, orders, order lines), relative."""
    folders = [landing / "events" / f"{day:%Y/%m/%d}"]
    files = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir()) if p.is_file()]
    for folder in ("orders", "order_items"):
        candidate = landing / folder / f"{folder}_{day.isoformat()}.csv"
        if candidate.exists():
            files.append(candidate)
    return [p.relative_to(landing) for p in files]


def newest_day_with_files(landing: Path) -> date:
    """The latest calendar day that has an events folder or a daily orders file."""
    days = [
        date(int(p.parts[-3]), int(p.parts[-2]), int(p.parts[-1]))
        for p in (landing / "events").glob("*/*/*")
        if p.is_dir() and any(p.iterdir())
    ]
    pattern = re.compile(r"_(\d{4}-\d{2}-\d{2})\.csv$")
    for folder in ("orders", "order_items"):
        days += [
            date.fromisoformat(m.group(1))
            for p in (landing / folder).glob("*.csv")
            if (m := pattern.search(p.name))
        ]
    if not days:
        raise FileNotFoundError(f"{landing} has no daily events or orders files to hold back")
    return max(days)


def hold_back_day(landing: Path, holdback: Path, day: date) -> list[Path]:
    """Move one day's files out of the landing folder, keeping their relative paths."""
    moved = day_files(landing, day)
    for relative in moved:
        (holdback / relative).parent.mkdir(parents=True, exist_ok=True)
        (landing / relative).rename(holdback / relative)
    return moved


def ensure_dataset(cache: Path, size: str) -> Dataset:
    """The cached data set for a size: generated once with the fixed seed, newest day held back."""
    root, people = cache / size, SIZES[size]
    landing, holdback, meta_path = root / "landing", root / "holdback", root / "dataset.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("people") == people and meta.get("seed") == SEED and holdback.is_dir():
        return Dataset(
            size, people, landing, holdback, date.fromisoformat(meta["held_back_day"]), meta["events"]
        )
    summary_path = landing / "_truth" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if summary.get("people") != people or summary.get("seed") != SEED or holdback.exists():
        shutil.rmtree(root, ignore_errors=True)
        print(f"[{size}] generating {people:,} people (seed {SEED}) into {landing} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestration.cli",
                "generate",
                "--people",
                str(people),
                "--seed",
                str(SEED),
                "--out",
                str(landing),
                "--quiet",
            ],
            cwd=REPO_ROOT,
            check=True,
        )
        summary = json.loads(summary_path.read_text())
    day = newest_day_with_files(landing)
    hold_back_day(landing, holdback, day)
    meta = {
        "people": people,
        "seed": SEED,
        "held_back_day": day.isoformat(),
        "events": summary["unique_events"],
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return Dataset(size, people, landing, holdback, date.fromisoformat(meta["held_back_day"]), meta["events"])


def link_tree(source: Path, target: Path, skip: tuple[str, ...] = ()) -> None:
    """Hard-link every file of `source` under `target` (same bytes, no copy; the cache stays intact)."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or relative.parts[0] in skip:
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target / relative)


def warm_page_cache(landing: Path) -> int:
    """Read every landed file once so no measurement pays for the first read from disk."""
    total = 0
    for path in landing.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 24):
                    total += len(chunk)
    return total


# ---------------------------------------------------------------- where Huaxiang's time goes


def layer_of(step_key: str) -> str:
    """The README's layers, from Dagster step keys (asset keys joined by '__', dbt layer op names)."""
    if step_key.startswith("raw__") or step_key == "every_landed_record_accounted_for":
        return "landing (ingest)"
    if step_key.startswith("dbt_"):
        return step_key
    if step_key.startswith("marts__") or "_gx_" in step_key:
        return "asset checks on marts (python, GX)"
    if "identity" in step_key:
        return "identity (python)"
    if step_key.startswith(("user_", "ml__", "marts__user")):
        return "ml assets (python)"
    if "publish" in step_key:
        return "serving (publish)"
    return step_key


def step_durations(dagster_home: Path) -> tuple[str, dict[str, float]]:
    """The newest run in this DAGSTER_HOME: its id and the seconds each step took."""
    import dagster as dg

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            run = instance.get_runs(limit=1)[0]
            stats = instance.get_run_step_stats(run.run_id)
    finally:
        if previous is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = previous
    return run.run_id, {s.step_key: s.end_time - s.start_time for s in stats if s.end_time and s.start_time}


def layer_seconds(steps: dict[str, float], wall_seconds: float) -> dict[str, float]:
    """Step seconds summed per layer, plus what the process spent outside any step (imports, dbt parse)."""
    layers: dict[str, float] = defaultdict(float)
    for step, seconds in steps.items():
        layers[layer_of(step)] += seconds
    layers["outside steps (startup, manifest, summary)"] = wall_seconds - sum(steps.values())
    return {name: round(seconds, 2) for name, seconds in sorted(layers.items(), key=lambda kv: -kv[1])}


def regroup(layers: dict[str, float]) -> dict[str, float]:
    """Re-apply `layer_of` to saved timings (idempotent on layer names), slowest first."""
    grouped: dict[str, float] = defaultdict(float)
    for name, seconds in layers.items():
        grouped[layer_of(name)] += seconds
    return {name: round(seconds, 2) for name, seconds in sorted(grouped.items(), key=lambda kv: -kv[1])}


def dbt_model_seconds(code: Path, run_id: str, limit: int = 8) -> list[tuple[str, float]]:
    """The slowest dbt nodes (models and tests) of one Dagster run, from dbt's run_results.json."""
    timings = []
    for results in (code / "dbt_project" / "target").glob(f"*-{run_id[:7]}-*/run_results.json"):
        for node in json.loads(results.read_text())["results"]:
            timings.append((node["unique_id"], round(node["execution_time"], 2)))
    return sorted(timings, key=lambda kv: -kv[1])[:limit]


def huaxiang_command(landing: Path, warehouse: Path, as_of: date) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orchestration.cli",
        "run",
        "--landing",
        str(landing),
        "--warehouse",
        str(warehouse),
        "--as-of",
        as_of.isoformat(),
    ]


def huaxiang_env(dagster_home: Path) -> dict[str, str]:
    """The Makefile's environment, with a DAGSTER_HOME of our own so the run's step stats are kept."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return os.environ | {
        "DAGSTER_HOME": str(dagster_home),
        "GX_ANALYTICS_ENABLED": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # The benchmark's landing folder is copied from generated data, which the CLI cannot tell from
        # real data; a salt of its own keeps the dev-salt guard out of the way without weakening it.
        "HUAXIANG_PII_SALT": os.environ.get("HUAXIANG_PII_SALT", "benchmark-only-salt-" + "0" * 32),
    }


def feature_totals(frame: pd.DataFrame) -> dict[str, float]:
    """Column sums that any correct implementation must agree on, whatever its notion of a person."""
    return {
        "people": len(frame),
        "paid_orders": int(frame["frequency"].sum()),
        "monetary": round(float(frame["monetary"].sum()), 2),
        "events": int(frame["events"].sum()),
    }


def huaxiang_totals(warehouse: Path) -> dict[str, float]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return feature_totals(
            conn.execute("select frequency, monetary, events from marts.user_features").df()
        )


def compare_features(lower_bound: pd.DataFrame, baseline: pd.DataFrame) -> dict[str, object]:
    """People and values on which the two independent implementations disagree (expected: none)."""
    merged = lower_bound.merge(
        baseline, on="person_id", how="outer", suffixes=("_sql", "_pandas"), indicator=True
    )
    both = merged[merged["_merge"] == "both"]
    differing = {}
    for column in COMPARED_COLUMNS:
        left = pd.to_numeric(both[f"{column}_sql"], errors="raise").astype(float)
        right = pd.to_numeric(both[f"{column}_pandas"], errors="raise").astype(float)
        same = (left - right).abs().le(1e-6) | (left.isna() & right.isna())
        differing[column] = int((~same).sum())
    return {
        "people_sql": len(lower_bound),
        "people_pandas": len(baseline),
        "people_in_one_only": int((merged["_merge"] != "both").sum()),
        "differing_values": differing,
    }


# ---------------------------------------------------------------- one size


def run_size(dataset: Dataset, cache: Path, skip: set[str], profile: bool) -> SizeResult:
    """All measurements for one data set, each in a fresh subprocess on the same staged files."""
    size = dataset.size
    work = cache / size / "run"
    shutil.rmtree(work, ignore_errors=True)
    landing, warehouse = work / "landing", work / "warehouse" / "huaxiang.duckdb"
    link_tree(dataset.landing, landing, skip=("_truth",))
    full_as_of = dataset.held_back_day - timedelta(days=1)
    warm_page_cache(landing)
    warm_page_cache(dataset.holdback)
    result = SizeResult(size, dataset.people, dataset.events, dataset.held_back_day.isoformat())
    result.measured_at = f"{datetime.now():%Y-%m-%d %H:%M}"
    env = huaxiang_env(work / "dagster_home")
    code = snapshot_code(work / "code")

    def report(name: str, m: Measurement) -> None:
        result.measurements[name] = m
        save_result(cache, result)  # after every measurement: an interrupted run keeps what it measured
        status = "ok" if m.returncode == 0 else f"EXIT {m.returncode} (see {m.log})"
        print(
            f"[{size}] {name:<20} {m.seconds:9.1f}s  peak {m.peak_tree_mb:8.0f} MB  "
            f"load {m.load_before:.1f}->{m.load_after:.1f}  {status}",
            flush=True,
        )

    if "huaxiang" not in skip:
        m = measure(
            huaxiang_command(landing, warehouse, full_as_of), work / "logs" / "huaxiang_full.log", env, code
        )
        report("huaxiang_full", m)
        if m.returncode != 0:
            raise SystemExit(f"[{size}] the Huaxiang full build failed; its log is {m.log}")
        run_id, steps = step_durations(work / "dagster_home")
        result.full_layers = layer_seconds(steps, m.seconds)
        result.slowest_models = dbt_model_seconds(code, run_id)
        if m.returncode == 0:
            result.totals["huaxiang"] = huaxiang_totals(warehouse)
            save_result(cache, result)
    if "huaxiang" not in skip and m.returncode == 0:
        link_tree(dataset.holdback, landing)
        m = measure(
            huaxiang_command(landing, warehouse, dataset.held_back_day),
            work / "logs" / "huaxiang_increment.log",
            env,
            code,
        )
        report("huaxiang_increment", m)
        _, steps = step_durations(work / "dagster_home")
        result.increment_layers = layer_seconds(steps, m.seconds)
        shutil.rmtree(landing)  # the baselines see what the full build saw
        link_tree(dataset.landing, landing, skip=("_truth",))

    outputs = {}
    for name, module in (("lower_bound", "benchmarks.lower_bound"), ("pandas", "benchmarks.pandas_baseline")):
        if name in skip:
            continue
        outputs[name] = work / f"{name}.parquet"
        command = [
            sys.executable,
            "-m",
            module,
            "--landing",
            str(landing),
            "--as-of",
            full_as_of.isoformat(),
            "--out",
            str(outputs[name]),
        ]
        m = measure(command, work / "logs" / f"{name}.log")
        report(name, m)
        if m.returncode == 0:
            result.totals[name] = feature_totals(pd.read_parquet(outputs[name]))
    if all(name in outputs and outputs[name].exists() for name in ("lower_bound", "pandas")):
        result.agreement = compare_features(
            pd.read_parquet(outputs["lower_bound"]), pd.read_parquet(outputs["pandas"])
        )
    if profile:
        profile_build(landing, work / "profile", full_as_of, env, code)
    save_result(cache, result)
    return result


def save_result(cache: Path, result: SizeResult) -> None:
    (cache / result.size / "results.json").write_text(json.dumps(asdict(result), indent=2, default=str))


def profile_build(landing: Path, folder: Path, as_of: date, env: dict[str, str], code: Path) -> None:
    """A separate full build under a sampling profiler, when one is installed."""
    folder.mkdir(parents=True, exist_ok=True)
    run_args = huaxiang_command(landing, folder / "huaxiang.duckdb", as_of)[1:]
    if importlib.util.find_spec("pyinstrument"):
        command = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "html",
            "-o",
            str(folder / "profile.html"),
            *run_args,
        ]
    elif shutil.which("py-spy"):
        command = [
            "py-spy",
            "record",
            "--subprocesses",
            "-o",
            str(folder / "profile.svg"),
            "--",
            sys.executable,
            *run_args,
        ]
    else:
        print(
            "--profile: neither pyinstrument nor py-spy is installed; no profile taken "
            "(the per-layer and per-model timings above say where the time goes)"
        )
        return
    m = measure(command, folder / "profile.log", env, code)
    print(f"profile written to {folder} ({m.seconds:.0f}s, exit {m.returncode})")


# ---------------------------------------------------------------- reporting


def ratio(numerator: Measurement | None, denominator: Measurement | None) -> str:
    if not numerator or not denominator or denominator.seconds <= 0:
        return "n/a"
    value = numerator.seconds / denominator.seconds
    return f"{value:.2f}x" if value < 1 else f"{value:.1f}x"


def machine_description() -> str:
    """CPU, cores, RAM and software versions, so numbers are read against the machine that made them."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    import dagster

    return (
        f"{model}, {psutil.cpu_count(logical=True)} logical cores "
        f"({psutil.cpu_count(logical=False)} physical), "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM; Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, pandas {pd.__version__}, Dagster {dagster.__version__}; "
        f"{platform.system()} {platform.release()}"
    )


def markdown_report(results: list[SizeResult], machine: str) -> str:
    """The table, ratios, per-layer split and slowest dbt nodes as Markdown."""
    lines = [
        "## Measured by `python -m benchmarks.run`",
        "",
        f"Machine: {machine}.",
        "",
        "Each cell: wall seconds / peak RSS of the whole process tree (MB) / 1-minute load average "
        "before the measurement (the machine is shared; load above the core count inflates the numbers).",
        "",
        "| size | people | events | Huaxiang full | Huaxiang increment | lower bound (DuckDB SQL) | pandas "
        "| measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = []
        for name in MEASURED:
            m = r.measurements.get(name)
            cells.append(
                "skipped"
                if m is None
                else f"{m.seconds:.1f}s / {m.peak_tree_mb:.0f} MB / {m.load_before:.1f}"
                + ("" if m.returncode == 0 else f" (exit {m.returncode})")
            )
        lines.append(
            f"| {r.size} | {r.people:,} | {r.events:,} | " + " | ".join(cells) + f" | {r.measured_at} |"
        )
    lines += [
        "",
        "| size | Huaxiang / lower bound | pandas / Huaxiang | increment / full | pandas / lower bound |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        m = r.measurements
        lines.append(
            f"| {r.size} | {ratio(m.get('huaxiang_full'), m.get('lower_bound'))} | "
            f"{ratio(m.get('pandas'), m.get('huaxiang_full'))} | "
            f"{ratio(m.get('huaxiang_increment'), m.get('huaxiang_full'))} | "
            f"{ratio(m.get('pandas'), m.get('lower_bound'))} |"
        )
    for r in results:
        lines += section_for_size(r)
    return "\n".join(lines) + "\n"


def section_for_size(r: SizeResult) -> list[str]:
    """One size's layer split, slowest dbt nodes, sanity totals and baseline agreement."""
    lines = ["", f"### {r.size}"]
    if r.full_layers:
        lines += [
            "",
            "Where Huaxiang's time goes (seconds per layer, from the Dagster step timings):",
            "",
            "| layer | full build | increment |",
            "|---|---|---|",
        ]
        increment = regroup(r.increment_layers)
        for layer, seconds in regroup(r.full_layers).items():
            lines.append(f"| {layer} | {seconds:.1f} | {increment.get(layer, 0.0):.1f} |")
    if r.slowest_models:
        nodes = ", ".join(f"`{name.split('.', 2)[-1]}` {s:.1f}s" for name, s in r.slowest_models)
        lines += ["", f"Slowest dbt nodes in the full build: {nodes}."]
    if r.totals:
        totals = "; ".join(
            f"{name}: " + ", ".join(f"{k} {v:,}" for k, v in t.items()) for name, t in r.totals.items()
        )
        lines += ["", f"Sanity totals (full-build as-of): {totals}."]
    if r.agreement:
        lines += [
            "",
            f"Lower bound vs pandas: {r.agreement['people_in_one_only']} people in one only, "
            f"differing values per column {r.agreement['differing_values']}.",
        ]
    return lines


def write_docs(path: Path, section: str) -> None:
    """Replace the marked section (or append it), leaving hand-written text around it untouched."""
    block = f"{DOCS_START}\n{section}{DOCS_END}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if DOCS_START in text and DOCS_END in text:
        before, rest = text.split(DOCS_START, 1)
        after = rest.split(DOCS_END, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def load_result(cache: Path, size: str) -> SizeResult:
    """A size's last results, as `run_size` saved them."""
    path = cache / size / "results.json"
    saved = json.loads(path.read_text())
    saved.setdefault("measured_at", f"{datetime.fromtimestamp(path.stat().st_mtime):%Y-%m-%d %H:%M} (saved)")
    saved["measurements"] = {name: Measurement(**m) for name, m in saved["measurements"].items()}
    saved["slowest_models"] = [tuple(pair) for pair in saved["slowest_models"]]
    return SizeResult(**saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="S,M", help="comma-separated among S (10k), M (100k), L (1M people)"
    )
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / "benchmarks" / "cache")
    parser.add_argument("--write-docs", type=Path, help="update the marked section of this Markdown file")
    parser.add_argument(
        "--report-only", action="store_true", help="measure nothing; report the sizes' last saved results"
    )
    parser.add_argument("--skip", default="", help="comma-separated among huaxiang, lower_bound, pandas")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one full build (pyinstrument/py-spy)"
    )
    args = parser.parse_args(argv)
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose among {sorted(SIZES)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    cache = args.cache.resolve()
    results = []
    for size in sizes:
        if args.report_only:
            results.append(load_result(cache, size))
            continue
        dataset = ensure_dataset(cache, size)
        print(
            f"[{size}] {dataset.people:,} people, {dataset.events:,} events; "
            f"held back {dataset.held_back_day}",
            flush=True,
        )
        results.append(run_size(dataset, cache, skip, args.profile))
    report = markdown_report(results, machine_description())
    print("\n" + report)
    if args.write_docs:
        write_docs(args.write_docs, report)
        print(f"wrote {args.write_docs}")
    failed = [f"{r.size}:{n}" for r in results for n, m in r.measurements.items() if m.returncode != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
