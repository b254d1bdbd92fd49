"""Interrupted runs resume in place to the same result, and no checkpoint load can run code."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# Epochs long enough (about half a second) to interrupt one in the middle.
RESUMABLE = (
    "data.n_samples=200000",
    "data.batch_size=64",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_cli(RESUMABLE, run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir


def interrupt_after_first_checkpoint(run_dir: Path, sig: signal.Signals) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # into the next epoch
    os.kill(process.pid, sig)
    process.wait(timeout=120)
    assert not (run_dir / "metrics.json").exists(), "the run finished before it was interrupted"
    return process


def assert_same_result(resumed: Path, reference: Path) -> None:
    final = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    expected = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == expected["global_step"]
    assert final["optimizer_steps"] == expected["optimizer_steps"] == 4 * -(-140000 // 64)
    for key, value in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key
    metrics = json.loads((resumed / "metrics.json").read_text())["metrics"]
    expected_metrics = json.loads((reference / "metrics.json").read_text())["metrics"]
    assert metrics == expected_metrics


def test_sigkill_mid_epoch_then_resume_is_bit_identical_to_an_uninterrupted_run(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    killed = interrupt_after_first_checkpoint(run_dir, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL

    resumed = run_cli([f"ckpt_path={run_dir}"], None)  # no run folder given: it must reuse its own
    assert resumed.returncode == 0, resumed.stderr
    assert_same_result(run_dir, uninterrupted)

    # The resumed config went beside the original, which is untouched.
    (resume_record,) = (run_dir / ".hydra" / "resumed").iterdir()
    assert (resume_record / "overrides.yaml").read_text().strip() == f"- ckpt_path={run_dir}"
    assert "ckpt_path: null" in (run_dir / ".hydra" / "config.yaml").read_text()

    # TensorBoard's curves continue: one val/loss point per epoch, steps only ever increasing.
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    steps = [event.step for event in events.Scalars("val/loss")]
    assert len(steps) == 4
    assert steps == sorted(set(steps))


def test_sigterm_stops_cleanly_with_a_checkpoint_and_says_how_to_resume(
    uninterrupted: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    stopped = interrupt_after_first_checkpoint(run_dir, signal.SIGTERM)
    _, stderr = stopped.communicate()
    assert stopped.returncode == 143
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: stopped by SIGTERM in epoch ")
    assert last_line.endswith(f"resume with `python train.py ckpt_path={run_dir}`")
    assert "Traceback" not in stderr
    epoch_saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]
    assert f"in epoch {epoch_saved + 1} " in last_line  # at most the current epoch is lost

    resumed = run_cli([f"ckpt_path={run_dir}"], None)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_result(run_dir, uninterrupted)


def test_resume_refuses_changed_settings_but_allows_more_epochs(
    uninterrupted: Path, tmp_path: Path
) -> None:
    result = run_cli([f"ckpt_path={uninterrupted}", "optimizer.lr=3"], None)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("only trainer.max_epochs may change, got optimizer.lr=3")


@pytest.fixture
def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint whose unpickling would create a marker file."""
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[Path]]:
            return (pathlib.Path.touch, (marker,))

    path = tmp_path / "checkpoints" / "evil.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": Payload(), "hyper_parameters": {"n_features": 8}}, path)
    return path, marker


def test_the_malicious_checkpoint_really_runs_code_when_loaded_unsafely(
    malicious_checkpoint: tuple[Path, Path],
) -> None:
    path, marker = malicious_checkpoint
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("train.py", ["ckpt_path={ckpt}"]),
        ("eval.py", ["ckpt_path={ckpt}"]),
        ("predict.py", ["model={ckpt}", "input=-"]),
    ],
)
def test_every_entry_point_refuses_a_malicious_checkpoint_without_running_it(
    malicious_checkpoint: tuple[Path, Path], tmp_path: Path, script: str, args: list[str]
) -> None:
    path, marker = malicious_checkpoint
    run_dir = tmp_path / "out" if script != "predict.py" else None
    result = run_cli([arg.format(ckpt=path) for arg in args], run_dir, script=script, stdin="1\n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: refusing to load {path}: it holds pickled objects other than tensors and plain "
        "values, which could run code (checkpoints are loaded with weights_only=True)"
    )
    assert not marker.exists()
