"""Browser end-to-end fixtures: one generated data set, one pipeline run, one `dagster dev`, one Chromium.

Only `pytest -m e2e` (`make e2e`) runs these; every other invocation deselects them, so `make test` needs
neither a browser nor Playwright.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration.generator import generate

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("HUAXIANG_E2E_CHROMIUM", "/usr/bin/chromium"))
# Debian's Chromium, run the way CI containers need it: no sandbox, no GPU, small /dev/shm, no phoning home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PEOPLE = 200
SEED = 5
SALT = "e2e-test-salt"
PIPELINE_TIMEOUT_SECONDS = 480
SERVER_START_TIMEOUT_SECONDS = 300
STOP_GRACE_SECONDS = 30


def pytest_collection_modifyitems(config, items):
    """Run e2e tests only when the marker expression names them (`-m e2e`), never as part of a plain run."""
    if "e2e" in (config.option.markexpr or ""):
        return
    deselected = [item for item in items if item.get_closest_marker("e2e")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("e2e")]


@dataclass(frozen=True)
class Deployment:
    root: Path
    landing: Path
    warehouse: Path
    as_of: str
    env: dict[str, str]

    @property
    def report_path(self) -> Path:
        return self.warehouse.parent / "report.html"


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log, for failure messages that say what went wrong without opening files."""
    if not path.exists():
        return f"({path} was not written)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(base_url: str, query: str, timeout: float = 30) -> dict:
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.load(response)
    assert "errors" not in payload, f"GraphQL error from {base_url}: {payload['errors']}"
    return payload["data"]


@pytest.fixture(scope="session")
def deployment(tmp_path_factory) -> Deployment:
    """A generated landing folder run once through the pipeline, as a user would with `huaxiang run`."""
    root = tmp_path_factory.mktemp("e2e")
    landing = root / "landing"
    summary = generate(people=PEOPLE, seed=SEED, out=landing, progress=False)
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    deployed = Deployment(
        root=root,
        landing=landing,
        warehouse=root / "warehouse" / "huaxiang.duckdb",
        as_of=summary.as_of.isoformat(),
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HUAXIANG_LANDING_DIR": str(landing),
            "HUAXIANG_WAREHOUSE": str(root / "warehouse" / "huaxiang.duckdb"),
            "HUAXIANG_AS_OF": summary.as_of.isoformat(),
            "HUAXIANG_PII_SALT": SALT,
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_TELEMETRY_DISABLED": "true",
            "GX_ANALYTICS_ENABLED": "false",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
    )
    log = root / "pipeline.log"
    with log.open("w") as output:
        finished = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "run"],
            cwd=REPO_ROOT,
            env=deployed.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=PIPELINE_TIMEOUT_SECONDS,
        )
    assert finished.returncode == 0, f"`huaxiang run` failed (exit {finished.returncode}):\n{tail(log)}"
    return deployed


def stop_process_group(process: subprocess.Popen) -> None:
    """`dagster dev` runs a webserver, a daemon and code servers: stop the whole group, politely first."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):  # still shutting down: the SIGKILL below ends it
        process.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):  # the whole group already exited on SIGTERM
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=STOP_GRACE_SECONDS)


def wait_for_code_location(base_url: str, process: subprocess.Popen, log: Path) -> None:
    """Up means the webserver answers and the definitions loaded; a load error fails with its message."""
    query = (
        "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"`dagster dev` exited with {process.returncode}:\n{tail(log)}"
        try:
            workspace = graphql(base_url, query, timeout=10)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(2)
            continue
        entries = workspace.get("locationEntries") or []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, (
                f"the code location failed to load: {errors[0]['locationOrLoadError']['message']}"
            )
            return
        time.sleep(2)
    pytest.fail(
        f"`dagster dev` did not load definitions within {SERVER_START_TIMEOUT_SECONDS}s:\n{tail(log)}"
    )


@pytest.fixture(scope="session")
def dagster_server(deployment) -> str:
    """`dagster dev` on a free port against the deployment's warehouse; yields its base URL."""
    port = free_port()
    log = deployment.root / "dagster_dev.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-m", "orchestration.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=deployment.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_code_location(base_url, process, log)
        yield base_url
    finally:
        stop_process_group(process)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium chromium-driver` (Debian) first")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python `playwright` package is missing: `make e2e` installs it into the virtualenv")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=120_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(60_000)
    context.set_default_navigation_timeout(120_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
