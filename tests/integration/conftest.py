"""One generated landing folder and one pipeline run, shared by the integration tests."""

import json
import shutil
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from orchestration.cli import run_pipeline
from orchestration.generator import generate
from orchestration.settings import Settings

PEOPLE = 600
SEED = 11
SALT = "integration-test-salt"


@dataclass
class PipelineRun:
    settings: Settings
    truth_dir: Path
    summary: dict
    success: bool

    def query(self, sql: str, params=None) -> list[tuple]:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def frame(self, sql: str, params=None) -> pd.DataFrame:
        with duckdb.connect(str(self.settings.warehouse_path), read_only=True) as conn:
            return conn.execute(sql, params or []).df()

    def truth(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.truth_dir / name, dtype=str, keep_default_na=False)

    def private_copy(self, root: Path) -> Settings:
        """Settings for a copy of this run's warehouse (and its WAL) in `root`, for tests that write to it."""
        source = self.settings.warehouse_path
        for path in (source, source.with_name(source.name + ".wal")):
            if path.exists():
                shutil.copyfile(path, root / path.name)
        return replace(self.settings, warehouse_path=root / source.name)


def settings_for(root: Path, landing: Path, as_of: date) -> Settings:
    return Settings(
        landing_dir=landing,
        warehouse_path=root / "warehouse" / "huaxiang.duckdb",
        timezone="Asia/Shanghai",
        pii_salt=SALT,
        as_of=as_of,
    )


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    landing = tmp_path_factory.mktemp("generated") / "landing"
    generate(people=PEOPLE, seed=SEED, out=landing, progress=False)
    return landing


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, generated) -> PipelineRun:
    root = tmp_path_factory.mktemp("run")
    landing = root / "landing"
    shutil.copytree(generated, landing)
    summary = json.loads((landing / "_truth" / "summary.json").read_text())
    settings = settings_for(root, landing, date.fromisoformat(summary["as_of"]))
    result = run_pipeline(settings)
    return PipelineRun(settings, landing / "_truth", summary, result.success)
