"""Shared helpers: compose the real configs, and run the real CLI in a subprocess."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# What every test run turns off: the progress display and Lightning's model table.
QUIET = ("trainer.enable_progress_bar=false", "trainer.enable_model_summary=false")
# Small enough to train in about a second, large enough to land near the noise floor.
FAST = ("data.n_samples=8000", "data.batch_size=64", "trainer.max_epochs=6", *QUIET)


def needs_gpus(count: int = 1) -> Callable[[Callable], Callable]:
    """Marks a test `gpu` and skips it where fewer than `count` CUDA GPUs are present."""

    def mark(test: Callable) -> Callable:
        found = torch.cuda.device_count()
        skip = pytest.mark.skipif(found < count, reason=f"needs {count} CUDA GPU(s), found {found}")
        return pytest.mark.gpu(skip(test))

    return mark


def options(group: str) -> list[str]:
    """The options of a config group, as `conf/` holds them: a new YAML is a new option, and the
    tests that go over every option pick it up with no edit."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` with its content hash: compare before and after to prove that a
    refused command changed nothing."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def compose_config(overrides: Sequence[str] = (), output_dir: Path | None = None) -> DictConfig:
    """The config `train.py` would see, with the run folder pointed at `output_dir`."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir else ["paths.output_dir=unused"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides, *extra])


def compose_choices(overrides: Sequence[str] = ()) -> dict[str, str]:
    """Which option of each config group `train.py` would compose (Hydra's runtime choices)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


def run_cli(
    args: Sequence[str], run_dir: Path | None, script: str = "train.py", stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python SCRIPT ARGS` from the project root, with its Hydra run folder at `run_dir`."""
    folder = [f"hydra.run.dir={run_dir}"] if run_dir else []
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args, *folder],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished `train.py` run folder, shared by the tests that use saved models."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run_cli([*FAST, "seed=5"], run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli([*FAST, *args], tmp_path / "run")

    return run


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`first_case_by_default`: every case of such a test starts the real CLI (seconds each), and
    one of them shows the path works; the others (each a different value or file) run with the
    slow tests, which CI runs too. Before `-m` deselects, so `-m slow` picks them up."""
    seen: set[tuple[object, str]] = set()
    for item in items:
        if item.get_closest_marker("first_case_by_default") is None:
            continue
        key = (item.path, getattr(item, "originalname", item.name))
        if key in seen:
            item.add_marker(pytest.mark.slow)
        seen.add(key)
