# Two entry points for a new user: `make run` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

# SQLite with Cloudflare's row counters, for the local D1 endpoint in tests and benchmarks (git-ignored).
D1METER_DIR := .build/d1meter
D1METER_LIB := $(D1METER_DIR)/libsqlite3_d1.so
D1METER_SRC := bv_pipeline_tests/fakes/d1meter

.PHONY: run test lint bench clean install d1meter

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole pipeline on embedded defaults: Dagster UI + daemon (sensor and schedule on) + read API.
run: $(STAMP)
	$(BIN)/bv-pipeline run

$(D1METER_LIB): $(D1METER_SRC)/build.sh $(D1METER_SRC)/patch_rowcounts.py
	$(D1METER_SRC)/build.sh $(D1METER_DIR)

d1meter: $(D1METER_LIB)

## Lint, then the whole test suite (slow end-to-end tests included).
test: $(STAMP) $(D1METER_LIB)
	$(BIN)/ruff check bv_pipeline bv_pipeline_tests bench
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check bv_pipeline bv_pipeline_tests bench
	$(BIN)/ruff format --check bv_pipeline bv_pipeline_tests bench

bench: $(STAMP) $(D1METER_LIB)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bv_data .dagster_home .pytest_cache .build
