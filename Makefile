# One command to set up and run, one to test. Everything lives in .venv; nothing is installed globally.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_HOME := $(CURDIR)/data/dagster_home

.PHONY: install demo run test test-all ui lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\n' > $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/huaxiang demo

run: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/huaxiang run

test: install
	$(BIN)/python -m pytest -m "not slow" -q

test-all: install
	$(BIN)/python -m pytest -q

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/huaxiang prepare
	$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check orchestration ml_assets expectations tests benchmarks

clean:
	rm -rf data/warehouse dbt_project/target
