# Two entry points for a new user: `make run` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: run test lint bench clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole pipeline on embedded defaults: Dagster UI + daemon (sensor and schedule on) + read API.
run: $(STAMP)
	$(BIN)/bv-pipeline run

## Lint, then the whole test suite (slow end-to-end tests included).
test: $(STAMP)
	$(BIN)/ruff check bv_pipeline bv_pipeline_tests bench
	$(BIN)/dg check defs
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check bv_pipeline bv_pipeline_tests bench
	$(BIN)/ruff format --check bv_pipeline bv_pipeline_tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bv_data .dagster_home .pytest_cache
