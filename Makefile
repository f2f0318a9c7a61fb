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

.PHONY: demo portal test lint sample bench-ingest bench-identity bench-exposures bench-city bench-spark clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev,notebooks]"
	$(BIN)/pip check
	touch $(STAMP)

# The demo replays the five delivery days as five daily runs (each sees the deliveries up to its
# as-of time), so the lists carry 新增/变更/解除 and the clock measures real delays.
DAYS := 2020-02-11 2020-02-12 2020-02-13 2020-02-14 2020-02-15
# After each run the sample city's offices answer their lists into that day's community/ folder
# of a copy of the landing (samplecity/offices.py), and the next run reads the answers.
demo: $(STAMP)
	rm -rf $(OUT)/trace24.duckdb $(OUT)/trace24_read.duckdb $(OUT)/trace24_raw $(OUT)/lists $(OUT)/landing \
	  $(OUT)/truth
	mkdir -p $(OUT) && cp -r data/sample/landing $(OUT)/landing
	for day in $(DAYS); do \
	  $(BIN)/trace24 run --landing $(OUT)/landing --db $(OUT)/trace24.duckdb --out $(OUT)/lists \
	    --as-of $${day}T00:00 --profile nhc-v6 || exit 1; \
	  $(BIN)/python -m samplecity.offices --lists $(OUT)/lists/$${day} --landing $(OUT)/landing \
	    --truth $(OUT)/truth/answers.csv || exit 1; \
	done
	$(BIN)/trace24 evaluate --db $(OUT)/trace24.duckdb --answers $(OUT)/truth/answers.csv

# The portal on the demo's output (run `make demo` first): sample accounts, one per role, are made
# once and their passwords printed; uploads go to the demo's landing copy.
portal: $(STAMP)
	$(BIN)/trace24 portal users sample --snapshot $(OUT)/trace24_read.duckdb
	$(BIN)/trace24 portal --snapshot $(OUT)/trace24_read.duckdb --lists $(OUT)/lists --landing $(OUT)/landing

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

bench-city: $(STAMP)
	$(BIN)/python benchmarks/city.py --residents 100000 --days 14

# The venue rule on local Spark against the demo's store (installs the optional extra `spark`).
bench-spark: $(STAMP)
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev,notebooks,spark]"
	$(BIN)/python benchmarks/spark_venue.py

clean:
	rm -rf $(OUT) .prefect .pytest_cache
