"""The fault suite: what a hostile user or an unlucky machine does, through the real CLI.

Each case asserts the exit status, the one-line message, and that nothing already written changed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, QUIET, ROOT, compose_config, run_cli, tree_digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import assert_one_line_error

from linreg.errors import DiskWriteError, LinregError
from linreg.files import RunLogFileHandler, write_json_atomic
from linreg.runs import load_checkpoint
from linreg.serve.predict import PredictArgs, read_chunks

PLUGINS = Path(__file__).parent / "plugins"
N_FEATURES = 8
ROW = ",".join(str(i) for i in range(1, N_FEATURES + 1))


def run(
    args: Sequence[str],
    script: str = "train.py",
    stdin: str | bytes | None = None,
    preexec_fn: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        timeout=300,
        preexec_fn=preexec_fn,
        env={**os.environ, **(env or {})},
    )


def decoded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess[str]:
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    return result


def predict(*args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
    return decoded(run(args, script="predict.py", stdin=stdin))


@pytest.fixture(scope="module")
def model(trained_run: Path) -> Path:
    return trained_run / "model.onnx"


# ------------------------------------------------------------------------------- predict.py input


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"x,{ROW[2:]}\n{ROW}\n{ROW}\n", "line 1, column 1: 'x' is not a number"),
        (f",{ROW[2:]}\n{ROW}\n", "line 1, column 1: '' is not a number"),
        (f"{ROW}\n{ROW[:-1]}oops\n", "line 2, column 8: 'oops' is not a number"),
        (f"#{ROW}\n{ROW}\n", "line 1, column 1: '#1' is not a number"),
        (ROW.encode("utf-16"), "is not UTF-8 text (a UTF-16 file or a binary one?)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "is not UTF-8 text (a UTF-16 file or a binary one?)"),
        (f"{ROW}\n1,2,3\n", "line 2 has 3 columns; the model takes 8 features"),
        ("1," * 3_000_000 + "1\n", "a line from line 1 on is longer than 1 MB"),
    ],
)
def test_a_bad_row_is_named_never_taken_for_a_header_or_dropped(
    model: Path, tmp_path: Path, content: str | bytes, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(content.encode() if isinstance(content, str) else content)
    out = tmp_path / "out.csv"
    result = predict(f"model={model}", f"input={source}", f"output={out}")
    assert_one_line_error(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_byte_order_mark_is_not_a_header_and_every_row_is_predicted(
    model: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"{ROW}\n{ROW}\n{ROW}\n", encoding="utf-8-sig")
    result = predict(f"model={model}", f"input={source}")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_a_header_of_names_is_skipped(model: Path) -> None:
    names = ",".join(f"x{i}" for i in range(N_FEATURES))
    result = predict(f"model={model}", "input=-", stdin=f"{names}\n{ROW}\n{ROW}\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_a_single_line_of_megabytes_costs_no_more_memory_than_its_text(
    model: Path, tmp_path: Path
) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text("1," * 6_000_000 + "1\n")  # 12 MB, one line
    short = tmp_path / "short.csv"
    short.write_text(ROW + "\n")
    # Measured from a small parent: a child forked from pytest starts with pytest's peak.
    measure = (
        "import resource, subprocess, sys; result = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    peaks_kb, errors = {}, {}
    for source in (short, wide):
        command = [sys.executable, "-c", measure, sys.executable, str(ROOT / "predict.py"),
                   f"model={model}", f"input={source}"]  # fmt: skip
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        peaks_kb[source.name], errors[source.name] = int(result.stdout.split()[-1]), result.stderr
    assert "a line from line 1 on is longer than 1 MB" in errors["wide.csv"]
    assert errors["short.csv"] == ""
    # Measured: 108 MB for the short row, 130 MB here (the reader stops at its first 1 MB block);
    # 357 MB when the line was split and parsed.
    assert (peaks_kb["wide.csv"] - peaks_kb["short.csv"]) / 1024 < 50, peaks_kb


def test_an_npz_named_npy_is_refused_naming_its_arrays(model: Path, tmp_path: Path) -> None:
    archive = tmp_path / "features.npy"
    with archive.open("wb") as handle:
        np.savez(handle, train=np.ones((2, N_FEATURES)))
    assert_one_line_error(
        predict(f"model={model}", f"input={archive}"), "is a .npz archive of arrays (train)"
    )


def test_closed_stdin_is_one_line(model: Path) -> None:
    result = decoded(
        subprocess.run(
            [sys.executable, str(ROOT / "predict.py"), f"model={model}", "input=-"],
            cwd=ROOT, capture_output=True, stdin=subprocess.DEVNULL if False else None,
            preexec_fn=lambda: os.close(0),
        )
    )  # fmt: skip
    assert_one_line_error(result, "input=-: standard input is closed")


# ------------------------------------------------------------------------------ predict.py output


def test_an_output_that_is_a_folder_is_refused(model: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        predict(f"model={model}", "input=-", f"output={tmp_path}", stdin=f"{ROW}\n"),
        f"output={tmp_path} is a folder",
    )
    assert list(tmp_path.iterdir()) == []


def test_an_output_on_a_read_only_file_system_is_one_line(model: Path) -> None:
    target = Path("/proc/linreg-predictions.csv")  # procfs takes no new files, even from root
    result = predict(f"model={model}", "input=-", f"output={target}", stdin=f"{ROW}\n")
    assert_one_line_error(result, f"writing {target}")


def test_output_files_get_the_umask_mode_and_an_existing_file_keeps_its_own(
    model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    old_umask = os.umask(0o022)
    try:
        assert (
            predict(f"model={model}", "input=-", f"output={out}", stdin=f"{ROW}\n").returncode == 0
        )
        assert out.stat().st_mode & 0o777 == 0o644
        out.chmod(0o640)
        assert (
            predict(f"model={model}", "input=-", f"output={out}", stdin=f"{ROW}\n").returncode == 0
        )
        assert out.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old_umask)


def test_a_closed_pipe_ends_predict_quietly(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"{ROW}\n" * 200_000)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "predict.py"), f"model={model}", f"input={source}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout.readline()  # `| head -1`
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_prediction_leaves_no_temporary_files(
    model: Path, tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"{ROW}\n" * 1_000_000)
    out = tmp_path / "out" / "predictions.npy"
    out.parent.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "predict.py"), f"model={model}", f"input={source}",
         f"output={out}", "chunk_rows=1000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    while not list(out.parent.iterdir()):  # writing has begun
        assert process.poll() is None, process.communicate()
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status
    assert stderr.decode().strip().splitlines()[-1].startswith("error: ")
    assert list(out.parent.iterdir()) == []


def test_predict_help_prints_the_usage_and_exits_0() -> None:
    result = predict("--help")
    assert result.returncode == 0
    assert "python predict.py model=<run folder | model.onnx | file.ckpt>" in result.stdout


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300) | st.text(alphabet=" ,.-+e0123456789abx\t\r\n\ufeff", max_size=200))
def test_any_bytes_either_predict_every_row_or_fail_with_one_clear_error(content: bytes | str):
    data = content.encode() if isinstance(content, str) else content
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"linreg-fuzz-{os.getpid()}.csv"
    path.write_bytes(data)
    try:
        args = PredictArgs(model="unused", input=str(path), chunk_rows=7)
        rows = sum(len(chunk) for chunk in read_chunks(args, n_features=3))
    except LinregError as err:
        assert str(err).startswith(f"input={path}")
        assert "\n" not in str(err)
        return
    finally:
        path.unlink()
    # Success: one row per non-blank line, but for a first line that is all names.
    lines = [line for line in data.decode("utf-8-sig").splitlines() if line.strip()]
    cells = lines[0].split(",")
    header = all(c.strip() and not _is_float(c) for c in cells) and len(cells) == 3
    assert rows == len(lines) - header


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=3), min_size=1))
def test_numeric_rows_come_back_row_for_row(rows: list[list[float]]) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"linreg-rows-{os.getpid()}.csv"
    path.write_text("".join(",".join(repr(v) for v in row) + "\n" for row in rows))
    try:
        args = PredictArgs(model="unused", input=str(path), chunk_rows=5)
        read = np.concatenate(list(read_chunks(args, n_features=3)))
    finally:
        path.unlink()
    np.testing.assert_array_equal(read, np.array(rows, dtype=np.float32))


# -------------------------------------------------------------------------------- train.py input


@pytest.mark.first_case_by_default
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed=-1"], "seed=-1 is invalid: must be between 0 and 4294967295"),
        (["seed=1e17"], "seed: Value '1e+17' of type 'float' could not be converted to Integer"),
        (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 is invalid"),
        (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0 is invalid: must be > 0"),
        (["data.n_samples=3000000000"], "data.n_samples=3000000000 needs about 216 GB in memory"),
        (
            ["+optimizer.foo=1"],
            "optimizer: SGD.__init__() got an unexpected keyword argument 'foo'",
        ),
    ],
)
def test_a_bad_value_is_one_line_and_leaves_no_run_folder(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli([*FAST, *args], tmp_path / "run")
    assert_one_line_error(result, message)
    assert not (tmp_path / "run").exists()


def test_a_key_left_without_a_value_is_named_and_leaves_no_run_folder(tmp_path: Path) -> None:
    result = run_cli([*QUIET, "data=table", "data.target=y"], tmp_path / "run")
    assert_one_line_error(
        result, "data.path: no value given; set it on the command line (data.path=...)"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ctrl_c_in_training_says_how_to_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "data.n_samples=400000", "data.batch_size=64",
         "trainer.max_epochs=50", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: stopped by Ctrl-C in epoch ")
    assert last.endswith(f"resume with `python train.py ckpt_path={run_dir}`")
    assert "Traceback" not in stderr


def limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_full_disk_leaves_no_damaged_checkpoint_and_says_which_file(tmp_path: Path) -> None:
    # Checkpoints take about 7.5 KB, the config and log files under 6 KB (.hydra/hydra.yaml, which
    # holds the --help text, 5.7 KB).
    run_dir = tmp_path / "run"
    result = decoded(
        run([*FAST, "logger=none", f"hydra.run.dir={run_dir}"], preexec_fn=limit_file_size(6500))
    )
    assert_one_line_error(result, "file too large writing ")
    assert result.stderr.strip().endswith(".ckpt")
    assert (
        not list((run_dir / "checkpoints").glob("*"))
        if (run_dir / "checkpoints").exists()
        else True
    )
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and "file too large writing" in record["reason"]


@pytest.fixture(scope="module")
def streamed_table(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A 20,000-row `.npy` table read piece by piece: the overrides of a run over it."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20_000, 6))
    target = features @ np.arange(1.0, 7.0) + 0.1 * rng.normal(size=20_000)
    path = tmp_path_factory.mktemp("table") / "table.npy"
    np.save(path, np.column_stack([features, target]).astype(np.float32))
    return [*QUIET, "data=table", f"data.path={path}", "data.target=-1", "data.streaming=true"]


def assert_resumes_to_the_end(run_dir: Path, epochs: int) -> None:
    """The last good checkpoint of a run stopped by the disk continues it to its last epoch."""
    resumed = decoded(run([f"ckpt_path={run_dir}"]))
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == epochs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB tmpfs: room for the config, the log and a few epochs' checkpoints and events."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


@pytest.mark.slow
def test_a_disk_that_fills_during_a_streamed_run_stops_it_in_one_line_and_it_resumes(
    small_disk: Path, streamed_table: list[str]
) -> None:
    run_dir = small_disk / "run"
    result = decoded(run([*streamed_table, "trainer.max_epochs=20", f"hydra.run.dir={run_dir}"]))
    assert_one_line_error(result, "no space left on device ")
    assert "Traceback" not in result.stdout + result.stderr
    failed_at = result.stderr.strip().rpartition(" ")[2]
    assert Path(failed_at).is_relative_to(run_dir)
    kept = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")  # whole: written atomically
    assert 0 <= kept["epoch"] < 19
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    assert_resumes_to_the_end(run_dir, epochs=20)


@pytest.mark.slow
def test_a_file_size_limit_on_tensorboard_events_stops_the_run_in_one_line_naming_the_file(
    tmp_path: Path, streamed_table: list[str]
) -> None:
    # Checkpoints take about 7.5 KB; the event file passes 10 KB after a few epochs.
    run_dir = tmp_path / "run"
    result = decoded(
        run(
            [*streamed_table, "trainer.max_epochs=20", f"hydra.run.dir={run_dir}"],
            preexec_fn=limit_file_size(10_000),
        )
    )
    assert_one_line_error(result, "file too large: ")
    assert "Traceback" not in result.stdout + result.stderr
    assert "Exception in thread" not in result.stdout + result.stderr
    events = Path(result.stderr.strip().rpartition(" ")[2])
    assert events.parent == run_dir and events.name.startswith("events.out")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record == {"status": "failed", "reason": f"file too large: {events}", "objective": None}
    assert_resumes_to_the_end(run_dir, epochs=20)


def test_a_full_disk_under_the_run_log_is_one_error_naming_it_then_quiet() -> None:
    handler = RunLogFileHandler("/dev/full")  # every write: no space left on device
    logger = logging.getLogger("linreg.test.full-disk")
    logger.addHandler(handler)
    try:
        with pytest.raises(DiskWriteError, match=r"^no space left on device writing /dev/full$"):
            logger.error("a line")
        logger.error("the line that reports it")  # does not fail on it again
    finally:
        logger.removeHandler(handler)
        with contextlib.suppress(OSError):  # its buffer still holds the line /dev/full refused
            handler.close()


def test_a_full_disk_at_export_leaves_no_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ONNX file is smaller than a checkpoint: a full disk is injected where it is written.
    from linreg.run import pipeline
    from linreg.serve import onnx_model

    def export_half_then_fill_the_disk(network, path, opset):
        path.write_bytes(b"\x08\x07")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(onnx_model, "write", export_half_then_fill_the_disk)
    with pytest.raises(DiskWriteError) as info:
        pipeline.train(compose_config([*FAST, "logger=none"], tmp_path))
    assert str(info.value) == f"no space left on device writing {tmp_path / 'model.onnx'}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config_tree.txt"]


# --------------------------------------------------------------------- run folders, eval, resume


def strict_loads(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_run_records_are_strict_json_with_null_for_non_finite_numbers(
    trained_run: Path, tmp_path: Path
) -> None:
    assert strict_loads((trained_run / "metrics.json").read_text())["status"] == "completed"
    record = tmp_path / "metrics.json"
    write_json_atomic(record, {"metrics": {"test/r2": math.nan, "gap": [math.inf, 1.5]}})
    assert strict_loads(record.read_text()) == {"metrics": {"test/r2": None, "gap": [None, 1.5]}}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


@pytest.mark.first_case_by_default
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (".hydra/config.yaml", "config.yaml is damaged: not readable YAML"),
        ("metrics.json", "metrics.json is damaged: not readable JSON"),
    ],
)
@pytest.mark.parametrize("script", ["eval.py", "train.py"])
def test_a_damaged_run_record_is_one_line(
    run_copy: Path, tmp_path: Path, damage: str, message: str, script: str
) -> None:
    (run_copy / damage).write_text("{{{ not: [valid")
    if script == "train.py" and damage == "metrics.json":
        pytest.skip("resuming reads the config and the last checkpoint, not metrics.json")
    before = tree_digest(run_copy)
    folder = [f"hydra.run.dir={tmp_path / 'eval'}"] if script == "eval.py" else []
    result = decoded(run([f"ckpt_path={run_copy}", *folder], script=script))
    assert_one_line_error(result, message)
    assert tree_digest(run_copy) == before


@pytest.mark.slow
def test_a_checkpoint_from_another_run_is_refused_by_eval_and_resume(
    run_copy: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    assert run_cli([*FAST, "data.n_features=5", "seed=9"], other).returncode == 0
    shutil.copy(other / "checkpoints" / "last.ckpt", run_copy / "checkpoints" / "last.ckpt")
    stranger = run_copy / "checkpoints" / "epoch099.ckpt"
    shutil.copy(other / "checkpoints" / "last.ckpt", stranger)
    before = tree_digest(run_copy)
    evaluated = decoded(
        run([f"ckpt_path={stranger}", f"hydra.run.dir={tmp_path / 'e'}"], "eval.py")
    )
    assert_one_line_error(evaluated, "was not trained on the data of the run it lies in")
    resumed = decoded(run([f"ckpt_path={run_copy}"]))
    assert_one_line_error(resumed, "data.n_features=5 (the run's config: 8)")
    assert tree_digest(run_copy) == before


@pytest.mark.slow
def test_eval_skips_a_damaged_newest_checkpoint_of_an_interrupted_run(
    run_copy: Path, tmp_path: Path
) -> None:
    (run_copy / "metrics.json").unlink()  # interrupted: no record of the best checkpoint
    damaged = run_copy / "checkpoints" / "epoch099.ckpt"
    damaged.write_bytes((run_copy / "checkpoints" / "last.ckpt").read_bytes()[:4096])
    result = decoded(run([f"ckpt_path={run_copy}", f"hydra.run.dir={tmp_path / 'e'}"], "eval.py"))
    assert result.returncode == 0, result.stderr
    scored = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert not scored["checkpoint"].endswith("epoch099.ckpt")


def test_a_code_running_checkpoint_is_refused_as_such(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("true",))

    torch.save({"state_dict": Payload()}, path)
    result = predict(f"model={path}", "input=-", stdin=f"{ROW}\n")
    assert_one_line_error(result, f"refusing to load {path}: it holds pickled objects")


# ----------------------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_two_runs_started_into_one_folder_are_one_run_and_one_refusal(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *FAST, f"hydra.run.dir={run_dir}"]
    runs = [
        subprocess.Popen(
            [*command, f"seed={seed}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for seed in (1, 2)
    ]  # fmt: skip
    results = [(process.wait(timeout=300), process.communicate()[1]) for process in runs]
    assert sorted(status for status, _ in results) == [0, 1]
    refusal = next(stderr for status, stderr in results if status == 1).strip()
    assert len(refusal.splitlines()) == 1
    assert refusal.startswith(
        (
            f"error: {run_dir} is being trained by process ",
            f"error: hydra.run.dir={run_dir} already",
        )
    )
    # The folder is the winner's alone: its config, log, record and checkpoints agree.
    seed = 1 + [status for status, _ in results].index(0)
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").seed == seed
    assert json.loads((run_dir / "metrics.json").read_text())["seed"] == seed
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 5
    assert (run_dir / "train.log").read_text().count("GPU available") == 1  # one run logged


@pytest.mark.slow
def test_a_sweep_survives_a_job_that_crashes_and_reports_it(tmp_path: Path) -> None:
    result = decoded(
        run(
            ["-m", *FAST, "logger=none", "optimizer.lr=0.05,0.1",
             "+callbacks.bug._target_=faulty.FailsAtLearningRate", "+callbacks.bug.lr=0.1",
             f"hydra.sweep.dir={tmp_path}"],
            env={"PYTHONPATH": str(PLUGINS)},
        )
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    failed = json.loads((tmp_path / "lr=0.1" / "metrics.json").read_text())
    assert failed == {
        "status": "failed",
        "reason": "ValueError: a bug in a callback",
        "objective": None,
    }
    assert "Traceback" in (tmp_path / "lr=0.1" / "train.log").read_text()
    assert "Traceback" not in result.stderr
    rows = (tmp_path / "report.md").read_text().splitlines()[2:]
    assert [row.split("|")[3].strip() for row in rows] == ["completed", "failed"]


@pytest.mark.slow
def test_a_report_over_a_damaged_job_record_marks_it_unreadable(tmp_path: Path) -> None:
    result = decoded(run(["-m", *FAST, "logger=none", "seed=1,2", f"hydra.sweep.dir={tmp_path}"]))
    assert result.returncode == 0, result.stderr
    (tmp_path / "seed=2" / "metrics.json").write_text('{"status": "compl')
    (tmp_path / "report.md").write_text("stale")
    report = decoded(
        subprocess.run(
            [sys.executable, "-m", "linreg.sweep.report", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
        )
    )
    assert report.returncode == 0, report.stderr
    rows = (tmp_path / "report.md").read_text().splitlines()[2:]
    assert [row.split("|")[3].strip() for row in rows] == ["completed", "unreadable"]
    assert "metrics.json is damaged" in rows[1]


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has SLURM")
def test_the_slurm_launcher_without_slurm_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = decoded(run(["-m", "hydra/launcher=slurm", "seed=1", f"hydra.sweep.dir={sweep_dir}"]))
    assert_one_line_error(result, "hydra/launcher=slurm submits jobs with SLURM's sbatch and srun")
    assert not sweep_dir.exists()


@pytest.mark.first_case_by_default
@pytest.mark.parametrize(
    ("extra", "blame"),
    [
        ([], "optimizer.lr=1000)"),
        (["logger=none"], "optimizer.lr=1000)"),
        (["export.enabled=false"], "optimizer.lr=1000)"),
        (["optimizer.lr=0.05", "data.noise_std=1e30"], "the learning rate is not the cause"),
    ],
)
def test_a_diverging_run_stops_in_one_line_and_leaves_nothing_to_serve(
    tmp_path: Path, extra: list[str], blame: str
) -> None:
    # The reported case: the weights blow up in an execution's last step while every loss is
    # finite; the epoch's histograms, checkpoints, export and record must never see them.
    run_dir = tmp_path / "run"
    args = ["optimizer.lr=1e3", "data.n_samples=2000", "trainer.max_epochs=2", *extra]
    result = run_cli([*args, "trainer.enable_progress_bar=false"], run_dir)
    assert_one_line_error(result, "training diverged at step ")
    assert blame in result.stderr
    assert not list(run_dir.glob("*.onnx")) and not list(run_dir.glob("checkpoints/*"))
    record = strict_loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and record["objective"] is None
    if "logger=none" not in extra:  # TensorBoard tells a diverged run from a missing one
        events = EventAccumulator(str(run_dir))
        events.Reload()
        (status,) = events.Tensors("run/status/text_summary")
        text = status.tensor_proto.string_val[0].decode()
        assert text.startswith("failed: training diverged at step ")
