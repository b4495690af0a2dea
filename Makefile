# Two entry points for a new user: `make run` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

# SQLite with Cloudflare's row counters, for the local D1 endpoint in tests and benchmarks (git-ignored).
D1METER_DIR := .build/d1meter
D1METER_LIB := $(D1METER_DIR)/libsqlite3_d1.so
D1METER_SRC := bv_pipeline_tests/fakes/d1meter

.PHONY: run test lint bench clean install d1meter lock

# Installs exactly the versions pinned in requirements.lock (a constraints file: pyproject.toml still says what
# is needed, the lock says which versions). A dependency not in the lock is resolved freely: run `make lock`.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

## Re-resolve every dependency from pyproject.toml in a fresh venv and pin the result in requirements.lock.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Pinned versions of every dependency of bv-pipeline[dev], resolved from pyproject.toml by \`make lock\`."; \
	  echo "# Used as a constraints file (pip install -c requirements.lock) by make run / make test / CI. Do not edit."; \
	  echo "# Python: $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version())')"; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e ' | grep -vi '^bv-pipeline' ; } > $(LOCK)
	rm -rf .lock-venv

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
	$(BIN)/dg check defs
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check bv_pipeline bv_pipeline_tests bench
	$(BIN)/ruff format --check bv_pipeline bv_pipeline_tests bench

bench: $(STAMP) $(D1METER_LIB)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .bv_data .dagster_home .pytest_cache .build .lock-venv
