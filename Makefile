# Two commands do everything: `make train` and `make test`. Each sets up the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch goes in first, pinned, so pip keeps this build instead of resolving a (multi-GB) one of its own.
# Pick another build with e.g. `make setup TORCH_SPEC="torch==2.13.0 --index-url <your wheel index>"`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup train test test-all gpu-check lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev,sweep,cluster,bench]'
	touch $@

setup: $(VENV)/.installed

train: setup
	$(PY) train.py $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

test-all: setup
	$(PY) -m pytest -m '' $(ARGS)

# On a machine with a CUDA GPU: GPU tests, GPU runs and the GPU benchmark, in one report.
gpu-check: setup
	PYTHON=$(PY) scripts/gpu_check.sh $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
