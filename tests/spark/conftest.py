import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "spark: builds the dbt project on a local Spark (needs the spark extra; `make test-spark`)"
    )
