# Cadencia — two commands: `make run` (the whole system locally) and `make test` (the full suite).
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on brokers, callbacks and rebalances, not on CPU, so
# three share two cores well; each file stays in one process (its module fixtures start once).
TEST_WORKERS ?= 3
# e.g. PIPELINE_ARGS="--postgres postgresql://postgres@127.0.0.1:5432/postgres --workers 2"
PIPELINE_ARGS ?=
# Decisions/s with 10k and 1M debtors in the ledger (DESIGN §12: flat), on throwaway PostgreSQL
# databases when a server answers at 127.0.0.1:5432, else on SQLite files (set DECISIONS_ARGS for another server).
DECISIONS_PG   ?= postgresql://postgres@127.0.0.1:5432/postgres
DECISIONS_ARGS ?= --sizes 10000,1000000 --requests 3000 \
	$(shell (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo --postgres-admin $(DECISIONS_PG))

.PHONY: run test install lint typecheck pytest soak browser postgres schemas bench clean

LOCK_DEV     := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check --no-input
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command "make lock" pyproject.toml requirements/build.in

.PHONY: lock lock-upgrade

# Everything is installed from the committed lock with hashes: a fresh clone gets the same
# packages on any day. The project itself is installed without touching the index.
$(STAMP): pyproject.toml $(LOCK_DEV)
	@rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)  # a new venv each time the lock changes: exactly the lock, no strays
	@echo "installing the locked dependencies ($(LOCK_DEV)) into $(VENV); log: $(VENV)/install.log"
	@{ $(PIP) install --require-hashes --no-deps -r $(LOCK_DEV) && \
	   $(PIP) install --no-deps --no-build-isolation -e . ; } >$(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; echo "install failed (log above)"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

## Re-resolve the locks after a change to pyproject.toml (existing pins are kept where they still fit).
lock: install
	$(UV_COMPILE) --extra dev -o $(LOCK_DEV)
	$(UV_COMPILE) -c $(LOCK_DEV) -o $(LOCK_RUNTIME)

## Move every pin to the newest release the constraints allow: a reviewed commit, never a surprise.
lock-upgrade: install
	$(UV_COMPILE) --extra dev --upgrade -o $(LOCK_DEV)
	$(UV_COMPILE) -c $(LOCK_DEV) -o $(LOCK_RUNTIME)

## The whole system: embedded Kafka-compatible broker, sandbox providers, every service, a demo portfolio.
run: install
	@$(BIN)/cadencia run

## Installs everything (Python packages, Debian's chromium for the browser tests) and runs the suite.
test: install browser postgres lint typecheck pytest

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## The reliability suite (tests/reliability) with far more generated cases: schemathesis examples per
## operation and mode, hypothesis records per topic. Long (an hour or so); not part of `make test`.
SOAK_FUZZ_EXAMPLES ?= 100
SOAK_HOSTILE_RECORDS ?= 100
## The crash campaign (tests/reliability/test_crash_campaign.py): 2,000 requests over four minutes.
SOAK_CRASH_REQUESTS ?= 2000
SOAK_CRASH_SECONDS ?= 240
soak: install
	CADENCIA_FUZZ_EXAMPLES=$(SOAK_FUZZ_EXAMPLES) CADENCIA_HOSTILE_RECORDS=$(SOAK_HOSTILE_RECORDS) \
	  CADENCIA_CRASH_REQUESTS=$(SOAK_CRASH_REQUESTS) CADENCIA_CRASH_SECONDS=$(SOAK_CRASH_SECONDS) \
	  $(BIN)/pytest tests/reliability -s $(PYTEST_ARGS)

# Browser tests drive Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

# Database tests run on SQLite and PostgreSQL. With no server at 127.0.0.1:5432 (and no
# CADENCIA_TEST_PG), the tests start a throwaway cluster from Debian's binaries: make sure they exist.
postgres:
	@if [ -z "$$CADENCIA_TEST_PG" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null \
	    && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "no PostgreSQL at 127.0.0.1:5432: installing Debian's postgresql for a throwaway test cluster"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi; fi

schemas: install
	$(BIN)/cadencia schemas

bench: install
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/pipeline.py --json var/bench/pipeline.json $(PIPELINE_ARGS)
	$(BIN)/python bench/orchestrator.py --json var/bench/decisions.json $(DECISIONS_ARGS)
	$(BIN)/python bench/imports.py --rows 100000

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
