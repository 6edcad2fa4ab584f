"""The DuckDB memory bound: a default, an override, and a clear refusal of anything that is not a size."""

import pytest

from orchestration.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, duckdb_memory_limit


def test_default_memory_limit(monkeypatch):
    monkeypatch.delenv("HUAXIANG_DUCKDB_MEMORY_LIMIT", raising=False)
    assert duckdb_memory_limit() == DEFAULT_DUCKDB_MEMORY_LIMIT == "3GB"


@pytest.mark.parametrize("value", ["512MB", "8GB", "1.5GiB", " 2GB "])
def test_sizes_are_accepted(monkeypatch, value):
    monkeypatch.setenv("HUAXIANG_DUCKDB_MEMORY_LIMIT", value)
    assert duckdb_memory_limit() == value.strip()


@pytest.mark.parametrize("value", ["3", "lots", "3GB'; drop table raw.events; --", "-1GB"])
def test_anything_else_is_refused_with_the_variable_named(monkeypatch, value):
    monkeypatch.setenv("HUAXIANG_DUCKDB_MEMORY_LIMIT", value)
    with pytest.raises(ValueError, match="HUAXIANG_DUCKDB_MEMORY_LIMIT"):
        duckdb_memory_limit()


def test_the_warehouse_connection_applies_it(monkeypatch, tmp_path):
    from orchestration.resources import HuaxiangResource

    monkeypatch.setenv("HUAXIANG_DUCKDB_MEMORY_LIMIT", "512MB")
    resource = HuaxiangResource(landing_dir=str(tmp_path), warehouse_path=str(tmp_path / "w.duckdb"))
    with resource.connect() as conn:
        assert conn.execute("select current_setting('memory_limit')").fetchall()[0][0] == "488.2 MiB"
