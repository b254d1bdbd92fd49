"""What the user sees on the console: one-line errors, library logs without repeats or ads."""

from __future__ import annotations

import contextlib
import difflib
import gc
import itertools
import logging
import math
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from linreg.errors import (
    ConfigError,
    LinregError,
    NothingToDoError,
    RunInterruptedError,
    first_line,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


def user_error(err: BaseException) -> LinregError | None:
    """`err` as a one-line user error, or None for a programmer error (which keeps its traceback):
    ours, a file system that refused a write, or a config that Hydra could not compose."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from linreg.files import DISK_ERRNOS, write_error

    if isinstance(err, LinregError):
        return err
    if isinstance(err, OSError) and err.filename and err.errno in DISK_ERRNOS:
        return write_error(err, err.filename, doing="")  # read or written: the library knows
    if isinstance(err, OmegaConfBaseException | HydraException):
        return LinregError(_config_message(err))
    return None


def _config_message(err: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line reports, in one line naming the key."""
    cause = err.__cause__ if isinstance(err.__cause__, Exception) else err
    key = getattr(cause, "full_key", None)
    message = first_line(cause)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    heading = next((i for i, line in enumerate(lines) if line.startswith("Available options")), 0)
    options = list(itertools.takewhile(lambda line: not line.endswith(":"), lines[heading + 1 :]))
    if heading and options:  # an unknown option of a config group
        wanted = re.search(r"Could not find '[^']*/([^'/]+)'", lines[0])
        closest = _closest(wanted.group(1) if wanted else "", options)
        return f"{lines[0]}; {closest}choose one of {', '.join(options)}"
    unknown = _unknown_key_message(cause)
    if unknown:
        return unknown
    return f"{key}: {message}" if key else message


MAX_KEYS_LISTED = 15


def _unknown_key_message(cause: BaseException) -> str | None:
    """A key that its config node does not have (a typo: `optimizer.lrr`), named with the closest
    valid keys and, when they are few, all of that node's keys; None for any other error."""
    node, full_key = getattr(cause, "parent_node", None), getattr(cause, "full_key", None)
    if node is None or not full_key or not hasattr(node, "keys"):
        return None
    key = str(full_key).rpartition(".")[2]
    keys = [str(name) for name in node if not str(name).startswith("_") and name != "hydra"]
    if key in keys:
        return None
    parent = str(full_key).rpartition(".")[0]
    where = f"in {parent}" if parent else "at the top level"
    prefix = f"{parent}." if parent else ""
    listed = (
        f"valid keys: {', '.join(keys)}"
        if len(keys) <= MAX_KEYS_LISTED
        else f"`python {Path(sys.argv[0]).name} --cfg job` shows all {len(keys)}"
    )
    return f"{full_key}: no such key {where}; {_closest(key, keys, prefix)}{listed}"


def _closest(word: str, choices: list[str], prefix: str = "") -> str:
    """`did you mean x? ` for the choices closest to a misspelt word, or nothing."""
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f"did you mean {' or '.join(prefix + name for name in close)}? " if close else ""


def exit_on_user_error(run: Callable[[], T]) -> T:
    """Runs `run`; a user error becomes `error: <message>` on stderr and its exit status (1), and
    Ctrl-C a one-line `interrupted` with the shell's status for it (130)."""
    try:
        return run()
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        error = user_error(err)
        if error is None:
            raise
        if isinstance(error, NothingToDoError):
            print(error, flush=True)
        else:
            print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def run_app(main: Callable[[], object]) -> None:
    """Runs a Hydra entry point so that a config Hydra cannot compose (an unknown option or key, a
    value of the wrong type) is one line too, instead of Hydra's own multi-line report."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra re-raises instead of printing
    try:
        exit_on_user_error(main)
    finally:
        skip_final_collection()


def skip_final_collection() -> None:
    """Once the work is done and its files closed: the interpreter's last garbage collection at
    exit walks every object torch, Lightning and their imports created (0.6 s of a 4 s run), only
    to free memory the process returns anyway. Frozen objects are left out of it; exit handlers
    (log files, TensorBoard writers) still run."""
    gc.freeze()


def in_sweep() -> bool:
    """Whether this run is a job of a multirun (`-m`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(run: Callable[[], float], output_dir: Path, in_sweep: bool) -> float:
    """A single run stops at a user error (one line, exit status). A sweep's job must not stop the
    sweep, whatever it raises: its failure is recorded in its metrics.json (the traceback in its
    log) and it returns +inf, ranked last. KeyboardInterrupt still ends the whole sweep."""
    if not in_sweep:
        return exit_on_user_error(lambda: record_failure(run, output_dir, in_sweep))
    try:
        return record_failure(run, output_dir, in_sweep)
    except Exception as err:
        error = user_error(err)
        log.error("job failed: %s", _reason(err, error))
        if error is None:  # the traceback goes to the job's log file, not the console
            _log_to_file_only("traceback of the failure")
        return math.inf


def record_failure(run: Callable[[], float], output_dir: Path, in_sweep: bool) -> float:
    """Runs `run`; on failure its folder's metrics.json says so, with the reason, so eval.py,
    predict.py and the sweep report never take a failed run for a finished one. A single run
    refused for its config leaves no folder that looks like a run."""
    from linreg.files import write_json_atomic

    try:
        return _naming_unnamed_writes(run, output_dir)
    except RunInterruptedError:
        raise  # resumable: the folder stays as the last checkpoint left it
    except Exception as err:
        summary = output_dir / "metrics.json"
        if isinstance(err, ConfigError) and not in_sweep and _is_skeleton(output_dir):
            shutil.rmtree(output_dir, ignore_errors=True)
        elif not summary.exists():  # a resumed run's earlier record stays as it was
            failure = {
                "status": "failed",
                "reason": _reason(err, user_error(err)),
                "objective": None,
            }
            with contextlib.suppress(OSError, LinregError):  # a full disk must not hide the error
                write_json_atomic(summary, failure)
                _mark_failed_in_tensorboard(output_dir, failure["reason"])
        raise


def _naming_unnamed_writes(run: Callable[[], float], output_dir: Path) -> float:
    """A write that failed for the disk without naming its file (a library's buffered write) is
    named by the run's folder, where it wrote."""
    from linreg.files import DISK_ERRNOS, write_error

    try:
        return run()
    except OSError as err:
        if err.errno not in DISK_ERRNOS or err.filename:
            raise
        raise write_error(err, output_dir, doing="writing into") from err


def _mark_failed_in_tensorboard(output_dir: Path, reason: str) -> None:
    """A failed run shows in TensorBoard as a run with a graph and nothing else, easily taken for
    a missing one: a text summary (`run/status`) says what happened."""
    if not any(output_dir.glob(f"{EVENTS}*")):
        return
    from torch.utils.tensorboard import SummaryWriter

    with contextlib.closing(SummaryWriter(log_dir=str(output_dir))) as writer:
        writer.add_text("run/status", f"failed: {reason}")


SKELETON = {".hydra", ".lock", "config_tree.txt", "hparams.yaml", "csv"}
EVENTS = "events.out.tfevents."  # TensorBoard's event files, in the run folder itself


def _is_skeleton(output_dir: Path) -> bool:
    """Only what Hydra and the set-up write before any training: config, log, empty loggers.
    All of it is this run's own: its folder was new or empty when it took the folder's lock."""
    names = {path.name for path in output_dir.iterdir()} if output_dir.is_dir() else set()
    return all(
        name in SKELETON or name.endswith(".log") or name.startswith(EVENTS) for name in names
    )


def _reason(err: BaseException, error: LinregError | None) -> str:
    return str(error) if error else f"{type(err).__name__}: {first_line(err)}"


def _log_to_file_only(message: str) -> None:
    """Logs `message` with the exception being handled to the log files alone."""
    record = log.makeRecord(log.name, logging.ERROR, "", 0, message, (), sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def share_cores(parallel_jobs: int) -> None:
    """Give each of `parallel_jobs` jobs its share of the cores (-1: as many jobs as cores), so
    parallel sweeps do not oversubscribe the machine with torch threads."""
    import torch

    cores = os.cpu_count() or 1
    jobs = cores if parallel_jobs == -1 else max(1, parallel_jobs)
    torch.set_num_threads(max(1, cores // jobs))


class _DropNoise(logging.Filter):
    """Lightning's product tips, and its note that it reads the training data early to count the
    run's steps (it does so for the per-step learning-rate schedule, every run)."""

    PREFIXES = ("💡 Tip", "Loading `train_dataloader` to estimate number of stepping batches")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


class _LibraryNotesToLogFileOnly(logging.Filter):
    """Lightning's INFO lines (devices found, checkpoint restored, fit stopped) belong in the run's
    log file; the console keeps its warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith("lightning")


def tidy_lightning_output() -> None:
    """Call after importing Lightning under Hydra's logging set-up.

    The `lightning` package gives its logger a console handler of its own and still propagates to
    the root handlers that Hydra configures (console and the run's log file), so every line would
    print twice (its INFO lines now go to the log file only); it advertises a hosted product at
    every fit; and its pytree helper trips a deprecation warning of torch's that users can do
    nothing about. Its warning that an epoch has fewer steps than the logging interval is moot:
    the module then logs once per step.
    """
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
        for handler in logging.getLogger().handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.addFilter(_LibraryNotesToLogFileOnly())
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropNoise())
    warnings.filterwarnings(
        "ignore",
        message=r".*isinstance\(treespec, LeafSpec\)",
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller")
    # debug=overfit turns shuffling off itself (data.shuffle=false); Lightning looks only for its
    # own SequentialSampler, which the project's loaders do not use.
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled")
    # A resume writes into its run's own checkpoint folder on purpose (a new run refuses a
    # non-empty folder before Lightning would see it).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
