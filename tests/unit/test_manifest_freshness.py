"""`huaxiang` skips `dbt parse` only while the manifest is newer than every project file."""

import os
from pathlib import Path

from orchestration.cli import MANIFEST_STAMP, manifest_is_current

STAMP = "target=duckdb dbt=1.11.16\n"


def make_project(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "a.sql").write_text("select 1")
    (root / "dbt_project.yml").write_text("name: x")
    return root


def parse(project: Path, stamp: str = STAMP, at: float = 2_000_000_000.0) -> None:
    (project / "target").mkdir(exist_ok=True)
    for name, text in (("manifest.json", "{}"), (MANIFEST_STAMP, stamp)):
        path = project / "target" / name
        path.write_text(text)
        os.utime(path, (at, at))


def touch(path: Path, at: float) -> None:
    os.utime(path, (at, at))


def test_fresh_manifest_is_current(tmp_path):
    project = make_project(tmp_path)
    for path in (project / "models" / "a.sql", project / "dbt_project.yml"):
        touch(path, 1_000_000_000.0)
    parse(project)
    assert manifest_is_current(project, STAMP)


def test_no_manifest_or_no_stamp_is_stale(tmp_path):
    project = make_project(tmp_path)
    assert not manifest_is_current(project, STAMP)
    parse(project)
    (project / "target" / MANIFEST_STAMP).unlink()
    assert not manifest_is_current(project, STAMP)


def test_edited_model_makes_it_stale(tmp_path):
    project = make_project(tmp_path)
    touch(project / "dbt_project.yml", 1_000_000_000.0)
    parse(project)
    touch(project / "models" / "a.sql", 2_000_000_001.0)
    assert not manifest_is_current(project, STAMP)


def test_same_second_counts_as_stale(tmp_path):
    project = make_project(tmp_path)
    touch(project / "dbt_project.yml", 1_000_000_000.0)
    parse(project)
    touch(project / "models" / "a.sql", 2_000_000_000.0)
    assert not manifest_is_current(project, STAMP)


def test_other_target_makes_it_stale(tmp_path):
    project = make_project(tmp_path)
    for path in (project / "models" / "a.sql", project / "dbt_project.yml"):
        touch(path, 1_000_000_000.0)
    parse(project)
    assert not manifest_is_current(project, "target=spark dbt=1.11.16\n")


def test_files_dbt_writes_itself_are_ignored(tmp_path):
    project = make_project(tmp_path)
    for path in (project / "models" / "a.sql", project / "dbt_project.yml"):
        touch(path, 1_000_000_000.0)
    parse(project)
    (project / "logs").mkdir()
    (project / "logs" / "dbt.log").write_text("later")
    (project / "target" / "run_results.json").write_text("{}")
    assert manifest_is_current(project, STAMP)
