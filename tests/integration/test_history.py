"""Two runs a week apart on growing data: lifecycle history and transition counts, checked exactly."""

import json
import shutil
from datetime import date, timedelta

import pandas as pd
import pytest

from orchestration.cli import run_pipeline
from tests.integration.conftest import PipelineRun, settings_for

pytestmark = pytest.mark.integration


def hold_back_after(landing, cutoff: date, holding) -> None:
    """Move every daily events/orders/order_items file dated after `cutoff` out of the landing folder."""
    for path in sorted(landing.rglob("*")):
        if not path.is_file() or path.parts[-2] == "_truth":
            continue
        relative = path.relative_to(landing)
        day = None
        if relative.parts[0] == "events" and len(relative.parts) == 5:
            day = date(int(relative.parts[1]), int(relative.parts[2]), int(relative.parts[3]))
        elif relative.parts[0] in ("orders", "order_items"):
            day = date.fromisoformat(path.name.split("_")[-1].split(".")[0])
        if day and day > cutoff:
            target = holding / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)


def test_history_rows_and_transitions_are_exact(tmp_path, generated):
    landing, holding = tmp_path / "landing", tmp_path / "held"
    shutil.copytree(generated, landing)
    summary = json.loads((landing / "_truth" / "summary.json").read_text())
    second_day = date.fromisoformat(summary["as_of"])
    first_day = second_day - timedelta(days=7)
    hold_back_after(landing, first_day, holding)

    first = PipelineRun(settings_for(tmp_path, landing, first_day), landing / "_truth", summary, False)
    assert run_pipeline(first.settings).success
    stages_then = first.frame("select user_key, lifecycle_stage from ml.user_lifecycle")

    shutil.copytree(holding, landing, dirs_exist_ok=True)
    second = PipelineRun(settings_for(tmp_path, landing, second_day), landing / "_truth", summary, False)
    assert run_pipeline(second.settings).success
    stages_now = second.frame("select user_key, lifecycle_stage from ml.user_lifecycle")

    history = second.frame(
        "select as_of_date, count(*) as people from marts.user_lifecycle_history group by 1"
    )
    assert dict(zip(pd.to_datetime(history.as_of_date).dt.date, history.people, strict=True)) == {
        first_day: len(stages_then),
        second_day: len(stages_now),
    }
    moved = stages_then.merge(stages_now, on="user_key", suffixes=("_from", "_to"))
    expected = moved.groupby(["lifecycle_stage_from", "lifecycle_stage_to"]).size()
    got = second.frame(
        "select from_stage, to_stage, users from marts.lifecycle_transitions where to_date = ?", [second_day]
    ).set_index(["from_stage", "to_stage"])["users"]
    assert {k: int(v) for k, v in expected.items()} == {k: int(v) for k, v in got.items()}
    assert len(stages_now) > len(stages_then)
