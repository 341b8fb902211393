# Cadencia — two commands: `make run` (the whole system locally) and `make test` (the full suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test install lint typecheck pytest browser schemas bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The whole system: embedded Kafka-compatible broker, sandbox providers, every service, a demo portfolio.
run: install
	$(BIN)/cadencia run

## Installs everything (Python packages, Debian's chromium for the browser tests) and runs the suite.
test: install browser lint typecheck pytest

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Browser tests drive Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

schemas: install
	$(BIN)/cadencia schemas

bench: install
	$(BIN)/python bench/policy.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
