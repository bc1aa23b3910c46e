# `make run` and `make test` do all the set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= all,dev,bench

.PHONY: setup run test lint bench clean

setup: $(STAMP)

# Re-install only when the dependency declaration changes; torch stays pinned to the CPU wheel.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

run: setup
	$(BIN)/palaestra train --data penguins --target species

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) runs
