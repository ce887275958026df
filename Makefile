# The two commands of the README: `make demo` (the whole bench on the embedded
# defaults) and `make test`. Both create .venv, install everything and fetch the
# pinned assets first; every step is idempotent.
PYTHON ?= python3
VENV ?= .venv
# The CPU build lies on this project's machines; a GPU machine gets the CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin
STAMP = $(VENV)/.adaptbench-installed
PYTEST_ARGS ?=

.PHONY: setup assets demo test test-fast clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
	touch $(STAMP)

assets: setup
	$(BIN)/bench assets fetch

demo: assets
	$(BIN)/bench run configs/demo.yaml

test: assets
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
