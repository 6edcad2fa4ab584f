"""A snapshot of the asset graph, checks, jobs and schedules, so accidental wiring changes show in review.

After an intended change, regenerate with:
    python -c "from tests.unit.test_definitions import write_snapshot; write_snapshot()"
"""

from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "definitions_snapshot.txt"


def describe_definitions() -> str:
    from orchestration.cli import prepare_dbt_manifest

    prepare_dbt_manifest()
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        parents = ", ".join(sorted(p.to_user_string() for p in node.parent_keys))
        lines.append(f"asset {key.to_user_string()} [{node.group_name}] <- {parents}")
    for check in sorted(graph.asset_check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        lines.append(f"check {check.asset_key.to_user_string()}:{check.name}")
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if not job.name.startswith("__"):
            lines.append(f"job {job.name}")
    for schedule in sorted(defs.schedules or [], key=lambda s: s.name):
        lines.append(
            f"schedule {schedule.name} {schedule.cron_schedule} {schedule.execution_timezone} "
            f"{schedule.default_status.value} -> {schedule.job_name}"
        )
    return "\n".join(lines) + "\n"


def write_snapshot() -> None:
    SNAPSHOT.write_text(describe_definitions(), encoding="utf-8")


def test_definitions_match_the_snapshot():
    assert describe_definitions() == SNAPSHOT.read_text(encoding="utf-8")


def test_every_layer_has_its_group():
    text = SNAPSHOT.read_text(encoding="utf-8")
    for group in ("landing", "staging", "identity", "marts", "ml", "serving"):
        assert f"[{group}]" in text
