# Kairos: two commands. `make run` sets up and serves; `make test` sets up and runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Every install takes its versions from the lock (pyproject.toml keeps the ranges); `make lock`
# rebuilds it.
LOCK   := constraints.txt
# `make run HOST=0.0.0.0 PORT=8001` to choose; the environment's HOST or PORT is not read.
HOST   := 127.0.0.1
PORT   := 8000
# make test runs the suite on this many processes (pytest-xdist), each with its own PostgreSQL.
TEST_PROCESSES := 2

.PHONY: run test bench lint format install lock clean

run: install
	$(BIN)/kairos db upgrade
	$(BIN)/kairos serve --host $(HOST) --port $(PORT)

test: install
	@scripts/ensure-postgres
	@scripts/ensure-chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(TEST_PROCESSES)

bench: install $(VENV)/.bench-stamp
	@command -v wrk >/dev/null || scripts/ensure-wrk
	$(BIN)/python -m bench

$(VENV)/.bench-stamp: pyproject.toml $(LOCK)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	touch $@

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

# Resolve pyproject's ranges afresh in a throwaway venv (every extra) and pin what came out.
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install --quiet -e '.[dev,bench]'; \
	{ echo "# The resolved set of pip install -e '.[dev,bench]', pinned: make install and the bench"; \
	  echo "# install use it as constraints. Made by 'make lock' (a fresh resolve in a throwaway"; \
	  echo "# venv) on Python $$("$$tmp/venv/bin/python" -c 'import platform; print(platform.python_version(), platform.system(), platform.machine())'); do not edit by hand."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	@echo "$(LOCK) rebuilt: review 'git diff $(LOCK)', then run make test."

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
