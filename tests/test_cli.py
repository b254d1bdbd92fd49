"""The real `python train.py` in a subprocess: a good run, and every bad input's one-line error."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import ROOT, options, run_cli

Cli = Callable[..., subprocess.CompletedProcess[str]]


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ")
    assert message in last_line


def test_cli_run_fills_the_run_folder_and_prints_where(cli: Cli, tmp_path: Path) -> None:
    result = cli("optimizer=adam", "scheduler=plateau")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["overrides"][-2:] == ["optimizer=adam", "scheduler=plateau"]
    assert summary["metrics"]["test/mse"] <= 1.02 * summary["metrics"]["reference/test_mse"]
    assert (run_dir / "model.onnx").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert f"tensorboard --logdir {run_dir}" in result.stdout


@pytest.mark.first_case_by_default
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data.n_samples=0"], "data.n_samples=0 is invalid: must be >= 1"),
        (["data.batch_size=0"], "data.batch_size=0 is invalid: must be >= 1"),
        (["data.min_batches_per_epoch=0"], "data.min_batches_per_epoch=0 is invalid: must be >= 1"),
        (["data.max_batches_per_epoch=0"], "data.max_batches_per_epoch=0 is invalid: must be >= 1"),
        (
            ["optimizer=adam", "data.max_batches_per_epoch=10"],
            "data.max_batches_per_epoch=10 is invalid: must be >= data.min_batches_per_epoch=64",
        ),
        (["data.eval_batch_size=0"], "data.eval_batch_size=0 is invalid: must be >= 1"),
        (
            ["trainer.limit_val_batches=0.2"],
            "trainer.limit_val_batches: You requested to check 0.2 of the `val_dataloader` but "
            "0.2 * 1 < 1.",
        ),
        (["optimizer.lr=-1"], "optimizer.lr=-1.0 is invalid: must be > 0"),
        (["data.train_fraction=0.5"], "must add up to 1, got 0.5 + 0.15 + 0.15 = 0.8"),
        (["data.n_features=6000"], "data.n_features=6000 is invalid: needs fewer features"),
        (["trainer.devices=abc"], "trainer: `devices` selected with `CPUAccelerator`"),
    ],
)
def test_invalid_value_gives_one_line_naming_key_and_exit_1_and_leaves_no_folder(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    assert_one_line_error(cli(*args), message)
    assert not (tmp_path / "run").exists()  # caught before Hydra's folder, or removed after


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_accelerator_without_cuda_says_so_and_how_to_run_on_cpu(cli: Cli) -> None:
    assert_one_line_error(cli("trainer.accelerator=gpu"), "no CUDA GPU was found")
    assert "trainer.accelerator=cpu" in cli("trainer=gpu").stderr


def test_diverging_run_stops_naming_the_step_and_leaves_nothing_to_serve(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli("optimizer=sgd", "optimizer.lr=1e3")
    assert_one_line_error(result, "training diverged at step ")
    assert "optimizer.lr=1000)" in result.stderr
    run_dir = tmp_path / "run"
    assert not (run_dir / "model.onnx").exists()
    assert not list(run_dir.glob("checkpoints/*.ckpt"))  # caught before any epoch was saved
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert record["reason"].startswith("training diverged at step ")
    refused = run_cli([f"model={run_dir}", "input=-"], None, script="predict.py", stdin="1,2\n")
    assert_one_line_error(refused, f"model={run_dir}: that run failed (training diverged at step")


def test_unknown_option_suggests_the_closest_and_lists_the_available_ones_in_one_line(
    cli: Cli,
) -> None:
    assert_one_line_error(
        cli("optimizer=adamm"),
        "Could not find 'optimizer/adamm'; did you mean adam or adamw? choose one of "
        + ", ".join(options("optimizer")),
    )


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("optimizer.lr=abc", "optimizer.lr: Value 'abc' of type 'str' could not be converted"),
        ("seed=1e17", "seed: Value '1e+17' of type 'float' could not be converted to Integer"),
        # Typos: the config key, the closest valid keys, and a short group's every key.
        ("optimizer.lrr=1", "optimizer.lrr: no such key in optimizer; did you mean optimizer.lr? "
         "valid keys: lr, weight_decay, momentum, nesterov"),
        ("trainer.max_epoch=3", "trainer.max_epoch: no such key in trainer; did you mean "
         "trainer.max_epochs? `python train.py --cfg job` shows all"),
        ("optimzer=adam", "optimzer: no such key at the top level; did you mean optimizer? "
         "valid keys: data, model, optimizer, scheduler,"),
        ("data.n_sample=5", "data.n_sample: no such key in data; did you mean data.n_samples?"),
    ],
)  # fmt: skip
def test_wrong_type_or_unknown_key_names_the_key_in_one_line(
    cli: Cli, arg: str, message: str
) -> None:
    assert_one_line_error(cli(arg), message)
    assert "Config" not in cli(arg).stderr  # no internal schema class (SGDConfig, TrainConfig)


def test_train_help_says_what_it_does_with_the_groups_choices_and_commands_to_run_next() -> None:
    result = run_cli(["optimizer=adam", "--help"], None)
    assert result.returncode == 0
    help_text = result.stdout
    for group in ("optimizer", "scheduler", "data", "model", "trainer", "logger"):
        assert f"{group}: {', '.join(options(group))}" in help_text
    assert "optimizer [adam]" in help_text and "data [synthetic]" in help_text  # this run's
    assert "schema" not in help_text  # the typed schemas are not options to choose
    assert "powered by Hydra" not in help_text and "== Config ==" not in help_text
    next_commands = help_text.split("== What people run next ==")[1].splitlines()
    assert [line.split()[1] for line in next_commands if line.startswith("python")] == [
        "train.py", "train.py", "train.py", "eval.py", "predict.py"
    ]  # fmt: skip
    assert len(help_text.splitlines()) < 45


def test_eval_help_says_what_eval_does_without_the_training_groups() -> None:
    result = run_cli(["--help"], None, script="eval.py")
    assert result.returncode == 0
    assert result.stdout.startswith("python eval.py ckpt_path=<run folder or .ckpt>")
    assert "metrics.json" in result.stdout and "python predict.py" in result.stdout
    assert "optimizer" not in result.stdout and "scheduler" not in result.stdout


@pytest.mark.slow
def test_default_run_finishes_near_the_noise_floor(tmp_path: Path) -> None:
    result = run_cli([], tmp_path / "run")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["metrics"]["test/mse"] <= 1.01 * summary["metrics"]["reference/test_mse"]
    assert summary["metrics"]["test/mse"] == pytest.approx(0.25, rel=0.1)
    assert (ROOT / "conf" / "train.yaml").is_file()


@pytest.mark.parametrize("ending", ["returns", "user error", "Ctrl-C"])
def test_an_app_leaves_its_objects_out_of_the_last_collection_however_it_ends(
    ending: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The interpreter's last collection at exit costs 0.7 s once Lightning is imported (measured
    # in docs/performance.md); an app freezes its objects first, on every way out.
    import gc

    from linreg.cli import run_app
    from linreg.errors import LinregError

    def main() -> None:
        if ending == "user error":
            raise LinregError("data.n_samples=0 is invalid")
        if ending == "Ctrl-C":
            raise KeyboardInterrupt

    gc.unfreeze()
    try:
        if ending == "returns":
            run_app(main)
        else:
            with pytest.raises(SystemExit) as stop:
                run_app(main)
            assert stop.value.code == {"user error": 1, "Ctrl-C": 130}[ending]
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert (
        capsys.readouterr().err
        == {
            "returns": "",
            "user error": "error: data.n_samples=0 is invalid\n",
            "Ctrl-C": "error: interrupted (Ctrl-C)\n",
        }[ending]
    )


def test_a_config_naming_a_class_that_does_not_exist_says_what_is_missing() -> None:
    # Hydra's own first line ends in a colon (`Error loading '...MLPRegressor':`): the line goes
    # on with what follows it, so the user learns which name is wrong and why.
    from hydra.utils import instantiate

    from linreg.cli import user_error

    with pytest.raises(Exception) as info:
        instantiate({"_target_": "linreg.models.mlp.MLPRegressor"})
    message = str(user_error(info.value))
    assert "\n" not in message
    assert message.startswith("Error loading 'linreg.models.mlp.MLPRegressor': ")
    assert "No module named 'linreg.models.mlp.MLPRegressor'" in message


def test_a_slow_stage_says_so_while_it_runs_and_how_long_it_took(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from linreg.console import progress

    with progress("reading a wide table", after_s=0.05):
        time.sleep(0.3)
        said_while_running = capsys.readouterr().out
    assert said_while_running == f"{'working':<17}reading a wide table ...\n"
    ended = capsys.readouterr().out
    assert re.fullmatch(rf"{'working':<17}reading a wide table: 0\.[3-9] s\n", ended)
    with progress("a quick stage", after_s=0.5):
        pass
    time.sleep(0.6)
    assert capsys.readouterr().out == ""
