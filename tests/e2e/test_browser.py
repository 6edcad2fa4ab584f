"""The Dagster UI and the HTML report in a real browser: each group, a click-launched run, each chart."""

import re
import time

import pytest

from tests.e2e.conftest import graphql

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

GROUPS = ("landing", "staging", "identity", "marts", "ml", "serving")
REPORT_SECTIONS = 13
RUN_TIMEOUT_SECONDS = 300
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}


def appears(locator, timeout_ms: int) -> bool:
    """True when the element shows up in time; False, not an error, when it does not."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # only installed by `make e2e`

    try:
        locator.wait_for(state="visible", timeout=timeout_ms)
    except PlaywrightTimeoutError:
        return False
    return True


def dismiss_community_dialog(page) -> None:
    """Dagster's first-visit newsletter dialog covers the page; skip it when it shows up."""
    skip = page.locator("button", has_text=re.compile(r"^\s*Skip\s*$"))
    if appears(skip, 5_000):
        skip.click()


def report_runs(base_url: str, launched_after: float) -> list[dict]:
    query = (
        "{ runsOrError(limit: 20) { __typename ... on Runs { results { runId status creationTime "
        "assetSelection { path } } } } }"
    )
    runs = graphql(base_url, query)["runsOrError"]["results"]
    return [
        run
        for run in runs
        if run["creationTime"] >= launched_after
        and [key["path"] for key in run["assetSelection"]] == [["report"]]
    ]


def wait_for_report_run(base_url: str, launched_after: float) -> dict:
    """The run the click launched, once it has finished (queued and started runs are polled)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    seen = None
    while time.monotonic() < deadline:
        runs = report_runs(base_url, launched_after)
        if runs:
            seen = runs[0]
            if seen["status"] in TERMINAL_STATUSES:
                return seen
        time.sleep(3)
    pytest.fail(
        f"no finished run of `report` within {RUN_TIMEOUT_SECONDS}s after clicking Materialize "
        f"(last seen: {seen or 'no run launched'})"
    )


def test_asset_lineage_shows_every_group(page, dagster_server, artifacts):
    page.goto(f"{dagster_server}/asset-groups")
    dismiss_community_dialog(page)
    missing = [group for group in GROUPS if not appears(page.get_by_text(group, exact=True).first, 60_000)]
    page.screenshot(path=str(artifacts / "dagster-lineage.png"))
    assert not missing, f"asset groups not shown in the lineage view: {missing}"


def test_report_materializes_from_its_asset_page(page, dagster_server, deployment, artifacts):
    keys = [
        node["assetKey"]["path"]
        for node in graphql(dagster_server, "{ assetNodes { assetKey { path } } }")["assetNodes"]
    ]
    assert ["report"] in keys, (
        "the `report` asset is not in orchestration.definitions: add it to build_definitions"
    )
    before = deployment.report_path.stat().st_mtime if deployment.report_path.exists() else 0.0

    page.goto(f"{dagster_server}/assets/report")
    dismiss_community_dialog(page)
    materialize = page.locator("button", has_text=re.compile(r"^\s*Materialize\s*$"))
    materialize.wait_for(state="visible", timeout=120_000)
    launched_after = time.time() - 5  # server and test share a clock; allow for rounding
    materialize.click()
    confirm = page.locator("button", has_text=re.compile(r"^\s*Confirm\s*$"))
    if appears(confirm, 5_000):  # shown only when upstream assets were never materialized in this instance
        confirm.click()

    run = wait_for_report_run(dagster_server, launched_after)
    assert run["status"] == "SUCCESS", f"run {run['runId']} of `report` ended {run['status']}"
    assert deployment.report_path.stat().st_mtime > before, (
        "the run succeeded but did not rewrite report.html"
    )

    page.goto(f"{dagster_server}/assets/report")
    dismiss_community_dialog(page)
    page.get_by_text("takeaways", exact=True).first.wait_for(state="visible", timeout=120_000)
    page.screenshot(path=str(artifacts / "dagster-report-asset.png"))


def test_report_file_renders_every_chart_offline(page, deployment, artifacts):
    assert deployment.report_path.exists(), f"the pipeline run wrote no report at {deployment.report_path}"
    requested = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(deployment.report_path.as_uri(), wait_until="load")
    assert page.locator("section").count() == REPORT_SECTIONS
    assert deployment.as_of in page.locator("header").inner_text()
    images = page.locator("section img")
    assert images.count() >= REPORT_SECTIONS - 1, "every section but the rules table should have a chart"
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    broken = [alt for alt, complete, width, height in sizes if not (complete and width > 0 and height > 0)]
    assert not broken, f"charts that did not render: {broken}"
    takeaways = page.locator("section p.takeaway").all_inner_texts()
    assert len(takeaways) == REPORT_SECTIONS and all(text.strip() for text in takeaways)
    off_page = [url for url in requested if not url.startswith(("file:", "data:"))]
    assert not off_page, f"the report fetched from outside the file: {off_page}"
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)
