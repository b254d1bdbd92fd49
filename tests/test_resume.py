"""Interrupted runs resume in place to the same result, and no checkpoint load can run code."""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST, QUIET, ROOT, run_cli, tree_digest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import assert_one_line_error

# Epochs long enough (about half a second) to interrupt one in the middle.
RESUMABLE = (
    "data.n_samples=200000",
    "data.batch_size=64",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "data.max_batches_per_epoch=null",  # whole passes of 2,188 batches
    *QUIET,
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


@pytest.mark.slow
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
    events = EventAccumulator(str(run_dir))
    events.Reload()
    steps = [event.step for event in events.Scalars("val/loss")]
    assert len(steps) == 4
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_the_moved_folder_resumes_from_its_own_last_epoch(
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

    # Moved before resuming: the run follows its folder (no last-v1.ckpt, the best score kept).
    moved = tmp_path / "moved"
    run_dir.rename(moved)
    resumed = run_cli([f"ckpt_path={moved}"], None)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == [
        "epoch003.ckpt",
        "last.ckpt",
    ]
    assert_same_result(moved, uninterrupted)
    assert not run_dir.exists()


def last_epoch(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]


def test_last_checkpoint_holds_the_last_epoch_when_the_best_is_early(tmp_path: Path) -> None:
    # Watching for the largest val/loss makes the first epoch the best one.
    result = run_cli([*FAST, "callbacks.model_checkpoint.mode=max"], tmp_path / "run")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["paths"] == {
        "best_checkpoint": "checkpoints/epoch000.ckpt",
        "last_checkpoint": "checkpoints/last.ckpt",
        "model": "model.onnx",
    }
    assert last_epoch(tmp_path / "run") == summary["epochs"] - 1 == 5


@pytest.mark.slow
def test_resume_accepts_the_original_overrides_repeated(
    uninterrupted: Path, tmp_path: Path
) -> None:
    assert last_epoch(uninterrupted) == 3  # the last of max_epochs=4, also the best here
    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    before = json.loads((copy / "metrics.json").read_text())["metrics"]
    result = run_cli([*RESUMABLE, f"ckpt_path={copy}"], None)  # the usual requeue command line
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"nothing to resume: {copy} finished at epoch 4")
    assert json.loads((copy / "metrics.json").read_text())["metrics"] == before
    assert last_epoch(copy) == 3  # a finished run is not trained again


def test_resuming_a_finished_run_says_so_in_one_line_and_changes_nothing(
    uninterrupted: Path,
) -> None:
    before = tree_digest(uninterrupted)
    result = run_cli([f"ckpt_path={uninterrupted}"], None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"nothing to resume: {uninterrupted} finished at epoch 4 (ran all epochs); its results "
        f"are in {uninterrupted / 'metrics.json'} (to train it longer: trainer.max_epochs=<more>)"
    ]  # no `config` line, no old summary
    assert result.stderr == ""
    assert tree_digest(uninterrupted) == before


@pytest.mark.first_case_by_default
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=3"], "these overrides change it: optimizer.lr=0.4->3.0; "),
        (["optimizer=adam"], "these overrides change it: optimizer=sgd->adam; "),
        (["data.n_samples=999"], "these overrides change it: data.n_samples=200000->999; "),
        (["trainer.max_epochs=2"], "trainer.max_epochs=2 is less than the 4 epochs this run"),
        (
            ["trainer.max_epochs=6"],
            "this run's schedule (linreg.models.schedules.WarmupCosine, per optimizer step)",
        ),
    ],
)
def test_a_refused_resume_names_the_change_and_writes_nothing(
    uninterrupted: Path, args: list[str], message: str
) -> None:
    before = tree_digest(uninterrupted)
    result = run_cli([f"ckpt_path={uninterrupted}", *args], None)
    assert_one_line_error(result, message)
    assert tree_digest(uninterrupted) == before


@pytest.mark.slow
def test_a_run_with_a_step_schedule_trains_longer_when_resumed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    stepped = [*FAST, "scheduler=step", "trainer.max_epochs=3"]
    assert run_cli(stepped, run_dir).returncode == 0
    result = run_cli([f"ckpt_path={run_dir}", "trainer.max_epochs=5"], None)
    assert result.returncode == 0, result.stderr
    assert last_epoch(run_dir) == 4
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 5
    # Resumed again without a length, the run keeps the one it was extended to (it used to go
    # back to its original 3 epochs and crash in Lightning with a traceback).
    again = run_cli([f"ckpt_path={run_dir}"], None)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"nothing to resume: {run_dir} finished at epoch 5")
    assert not any(line.startswith("epoch ") for line in again.stdout.splitlines())
    assert "Checkpoint directory" not in again.stderr
    assert last_epoch(run_dir) == 4


@pytest.mark.first_case_by_default
@pytest.mark.parametrize("target", ["missing/run", "typo.ckpt"])
def test_resuming_something_that_is_not_a_run_creates_nothing(tmp_path: Path, target: str) -> None:
    before = sorted(os.listdir(ROOT))
    path = tmp_path / target if target.startswith("missing") else target
    result = run_cli([f"ckpt_path={path}"], None)
    assert_one_line_error(result, f"ckpt_path={path}: no such file or folder")
    assert sorted(os.listdir(ROOT)) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_second_resume_of_a_run_in_training_is_refused(uninterrupted: Path) -> None:
    with (uninterrupted / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a resume in progress holds it
        lock.write("process 12345")
        lock.flush()
        before = tree_digest(uninterrupted)
        result = run_cli([f"ckpt_path={uninterrupted}"], None)
    assert_one_line_error(result, f"{uninterrupted} is being trained by process 12345 right now")
    assert tree_digest(uninterrupted) == before


def test_a_new_run_into_a_finished_runs_folder_is_refused(uninterrupted: Path) -> None:
    before = tree_digest(uninterrupted)
    result = run_cli(["debug=fast_dev_run"], uninterrupted)
    assert_one_line_error(result, f"hydra.run.dir={uninterrupted} already holds files")
    assert tree_digest(uninterrupted) == before


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


@pytest.mark.first_case_by_default
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


def test_a_checkpoint_of_another_network_than_the_saved_config_is_refused_writing_nothing(
    uninterrupted: Path, tmp_path: Path
) -> None:
    # The run's saved config edited to name an MLP: resuming used to fail loading the linear
    # network's weights with a state_dict traceback, after writing .hydra/resumed/ and events.
    run_dir = tmp_path / "edited"
    shutil.copytree(uninterrupted, run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    text = saved.read_text()
    assert "_target_: linreg.models.linear.LinearRegressor" in text
    saved.write_text(text.replace("_target_: linreg.models.linear.LinearRegressor",
                                  "_target_: linreg.models.mlp.MLP"))  # fmt: skip
    before = tree_digest(run_dir)
    result = run_cli([f"ckpt_path={run_dir}", "trainer.max_epochs=4"], None)
    assert_one_line_error(
        result,
        "holds another network than its run's config names: model.net._target_="
        "linreg.models.mlp.MLP (the checkpoint's: linreg.models.linear.LinearRegressor); resume "
        "with the config it was trained with",
    )
    assert tree_digest(run_dir) == before
