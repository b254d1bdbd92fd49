# Two commands do everything: `make train` and `make test`. Each sets up the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The set-up installs what CI tested: the versions pinned in requirements/lock.txt (made by `make lock`
# from pyproject.toml's ranges), with uv, which installs them in seconds. PyTorch goes in first, with
# pip, so that the CPU build is kept (a bare `torch` from PyPI is a multi-GB CUDA build). Another build:
# make setup TORCH_SPEC="torch==2.13.0 --index-url <your wheel index>".
TORCH_SPEC ?= -r requirements/torch.txt
LOCK := requirements/lock.txt
BENCH_LOCK := requirements/lock-bench.txt
UV := $(VENV)/bin/uv
UV_VERSION := uv>=0.8,<1

.PHONY: help setup setup-bench lock train test test-all test-latest gpu-check lint format clean
.DEFAULT_GOAL := help

help: ## list these targets (ARGS="..." passes arguments on, e.g. make train ARGS="optimizer=adam")
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

# Set-up says what it does: it runs once (again only when pyproject.toml or the lock changes).
$(VENV)/.installed: pyproject.toml $(LOCK) requirements/torch.txt
	@echo "setup 1/4: creating the virtual environment $(VENV) with $(PYTHON) (seconds)"
	$(PYTHON) -m venv $(VENV)
	@echo "setup 2/4: installing PyTorch first, $(TORCH_SPEC) (the CPU build, about 750 MB installed; seconds to a minute)"
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	@echo "setup 3/4: installing uv, which installs the locked versions (seconds)"
	$(PY) -m pip install --quiet '$(UV_VERSION)'
	@echo "setup 4/4: installing the locked versions of Lightning, Hydra, TensorBoard, ONNX, onnxruntime, formulaic, Optuna and the test tools, then linreg (seconds)"
	$(UV) pip install --quiet --python $(PY) -r $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@
	@echo "setup done: $(VENV) holds $$(du -sh $(VENV) | cut -f1); activate it with: source $(VENV)/bin/activate"

setup: $(VENV)/.installed ## create .venv and install linreg with its tools at the locked versions (once)

# Not in `setup`: the oracles the benchmark and the slow tests compare linreg with.
setup-bench: setup ## add scikit-learn and statsmodels (the benchmark's and the tests' oracles)
	@echo "setup-bench: installing the locked scikit-learn and statsmodels (seconds)"
	$(UV) pip install --quiet --python $(PY) -r $(BENCH_LOCK)

# The lock is made with pip-tools, whose resolver honours pip's own settings (a local CPU wheel of
# torch, a wheel index), in an environment of its own. It pins torch's release without the build
# label (2.13.0, not 2.13.0+cpu): any build of that release satisfies it.
LOCK_TOOLS := $(VENV)-lock
lock: ## re-resolve requirements/lock*.txt from pyproject.toml's ranges (then commit them)
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install --quiet 'pip-tools>=7.4'
	$(LOCK_TOOLS)/bin/pip-compile --quiet --upgrade --strip-extras --no-emit-find-links \
		--no-emit-index-url --extra dev --extra sweep --extra cluster \
		-c requirements/torch.txt -o $(LOCK) pyproject.toml
	$(LOCK_TOOLS)/bin/pip-compile --quiet --upgrade --strip-extras --no-emit-find-links \
		--no-emit-index-url --extra dev --extra sweep --extra cluster --extra bench \
		-c $(LOCK) -o $(BENCH_LOCK) pyproject.toml
	sed -i -E 's/^(torch==[^+ ]+)\+[a-z0-9.]+/\1/' $(LOCK) $(BENCH_LOCK)
	rm -rf $(LOCK_TOOLS)

train: setup ## train with the defaults (python train.py $(ARGS))
	$(PY) train.py $(ARGS)

# The tests run in parallel (pytest-xdist), a process per core and at most 4: most of them start
# training runs of their own, each a Python process that imports Lightning. ARGS="-n 0": one process.
WORKERS := -n auto --maxprocesses 4
test: setup ## the default test suite (not the slow tests)
	$(PY) -m pytest $(WORKERS) $(ARGS)

test-all: setup ## every test, the slow ones too (GPU tests skip without CUDA)
	$(PY) -m pytest $(WORKERS) -m '' $(ARGS)

# The newest versions pyproject.toml's ranges allow, in an environment of their own, with the same
# PyTorch build as the lock (TORCH_SPEC chooses another): what a user who installs linreg into their
# own environment today gets.
LATEST := $(VENV)-latest
test-latest: ## the default suite against the newest versions the ranges allow (in .venv-latest)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet $(TORCH_SPEC) '$(UV_VERSION)'
	$(LATEST)/bin/python -c "import torch; print('torch==' + torch.__version__)" > $(LATEST)/torch.txt
	$(LATEST)/bin/uv pip install --quiet --python $(LATEST)/bin/python --upgrade \
		-c $(LATEST)/torch.txt -e '.[dev,sweep,cluster]'
	$(LATEST)/bin/uv pip list --python $(LATEST)/bin/python
	$(LATEST)/bin/python -m pytest $(WORKERS) $(ARGS)

gpu-check: setup ## on a CUDA machine: GPU tests, runs and benchmark in one report
	PYTHON=$(PY) scripts/gpu_check.sh $(ARGS)

lint: setup ## ruff check and format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup ## ruff fix and format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean: ## remove .venv and caches
	rm -rf $(VENV) $(VENV)-latest $(VENV)-lock .pytest_cache .ruff_cache src/*.egg-info
