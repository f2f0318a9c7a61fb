# trace24: `make demo` runs the pipeline on the shipped sample city; `make test` runs the tests.
# Both create the virtual environment from the locked dependency set when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: demo test lint sample bench-ingest bench-identity bench-exposures clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	$(BIN)/pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trace24 ingest --landing data/sample/landing --db $(OUT)/trace24.duckdb
	$(BIN)/trace24 link --db $(OUT)/trace24.duckdb
	$(BIN)/trace24 exposures --db $(OUT)/trace24.duckdb --profile nhc-v6
	$(BIN)/trace24 evaluate --db $(OUT)/trace24.duckdb

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

sample: $(STAMP)
	$(BIN)/trace24 sample --out data/sample

bench-ingest: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

bench-identity: $(STAMP)
	$(BIN)/python benchmarks/identity.py

bench-exposures: $(STAMP)
	$(BIN)/python benchmarks/exposures.py

clean:
	rm -rf $(OUT) .prefect .pytest_cache
