# One command to set up and run, one to test. Everything lives in .venv; nothing is installed globally.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_HOME := $(CURDIR)/data/dagster_home

.PHONY: install demo run test test-all test-spark ui lint bench clean

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
	$(BIN)/python -m pytest -m "not slow and not spark and not e2e" -q

test-all: install
	$(BIN)/python -m pytest -q

# The dbt project on a local Spark vs DuckDB (docs/scale-out.md); needs Java 17, has its own virtualenv.
SPARK_VENV ?= .venv-spark
$(SPARK_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SPARK_VENV)
	$(SPARK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SPARK_VENV)/bin/python -m pip install --quiet -e '.[dev,spark]'
	touch $@

test-spark: $(SPARK_VENV)/.installed
	$(SPARK_VENV)/bin/python -m pytest -m spark tests/spark -q

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/huaxiang prepare
	$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check orchestration ml_assets expectations tests benchmarks

bench: install
	$(BIN)/python -m benchmarks.run --sizes S,M --write-docs docs/benchmarks.md

.PHONY: bench-l
bench-l: install
	$(BIN)/python -m benchmarks.run --sizes L --write-docs docs/benchmarks.md

# Browser end-to-end test (tests/e2e): Playwright drives Debian's Chromium (apt-get install chromium);
# Playwright's own browser download is not used, so it works offline.
PLAYWRIGHT_VERSION ?= 1.65.2
CHROMIUM ?= /usr/bin/chromium
$(VENV)/.playwright: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet playwright==$(PLAYWRIGHT_VERSION)
	touch $@

.PHONY: e2e
e2e: $(VENV)/.playwright
	@test -x $(CHROMIUM) || { echo "make e2e needs Chromium at $(CHROMIUM): apt-get install chromium"; exit 1; }
	HUAXIANG_E2E_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -m e2e tests/e2e -q

clean:
	rm -rf data/warehouse dbt_project/target
