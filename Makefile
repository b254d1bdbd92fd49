# Two commands do everything: `make train` and `make test`. Each sets up the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch goes in first, pinned, so pip keeps this build instead of resolving a (multi-GB) one of its own.
# Pick another build with e.g. `make setup TORCH_SPEC="torch==2.13.0 --index-url <your wheel index>"`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: help setup setup-bench train test test-all gpu-check lint format clean
.DEFAULT_GOAL := help

help: ## list these targets (ARGS="..." passes arguments on, e.g. make train ARGS="optimizer=adam")
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

# Set-up says what it does: it runs once (again only when pyproject.toml changes) and takes a few
# minutes on a fresh machine, silent steps would look like a hang.
$(VENV)/.installed: pyproject.toml
	@echo "setup 1/3: creating the virtual environment $(VENV) with $(PYTHON) (seconds)"
	$(PYTHON) -m venv $(VENV)
	@echo "setup 2/3: installing PyTorch first, $(TORCH_SPEC) (the CPU build, about 750 MB installed; seconds to a minute)"
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	@echo "setup 3/3: installing linreg with Lightning, Hydra, TensorBoard, ONNX, onnxruntime, Optuna and the test tools (1 to 3 minutes)"
	$(PY) -m pip install --quiet -e '.[dev,sweep,cluster]'
	@touch $@
	@echo "setup done: $(VENV) holds $$(du -sh $(VENV) | cut -f1); activate it with: source $(VENV)/bin/activate"

setup: $(VENV)/.installed ## create .venv and install linreg with its tools (once)

# Not in `setup`: scikit-learn brings scipy, and torchmetrics imports scipy.signal whenever scipy is
# installed, which adds about 0.5 s to the start of every run.
setup-bench: setup ## add scikit-learn, for the benchmark's comparison (python -m linreg.bench --convergence)
	@echo "setup-bench: installing scikit-learn and scipy (seconds to a minute)"
	$(PY) -m pip install --quiet -e '.[bench]'

train: setup ## train with the defaults (python train.py $(ARGS))
	$(PY) train.py $(ARGS)

test: setup ## the default test suite (not the slow tests)
	$(PY) -m pytest $(ARGS)

test-all: setup ## every test, the slow ones too (GPU tests skip without CUDA)
	$(PY) -m pytest -m '' $(ARGS)

gpu-check: setup ## on a CUDA machine: GPU tests, runs and benchmark in one report
	PYTHON=$(PY) scripts/gpu_check.sh $(ARGS)

lint: setup ## ruff check and format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup ## ruff fix and format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean: ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
