"""What the user sees on the console: one-line errors, library logs without repeats or ads."""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from linreg.errors import LinregError

T = TypeVar("T")
log = logging.getLogger(__name__)


def exit_on_user_error(run: Callable[[], T]) -> T:
    """Runs `run`; a LinregError becomes `error: <message>` on stderr and its exit status (1)."""
    try:
        return run()
    except LinregError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def run_job(run: Callable[[], float], output_dir: Path, in_sweep: bool) -> float:
    """A single run stops at a user error (one line, exit status); a sweep's job must not stop the
    sweep: its failure is recorded in its metrics.json and it returns +inf, ranked last."""
    if not in_sweep:
        return exit_on_user_error(run)
    from linreg.summary import write_json_atomic

    try:
        return run()
    except LinregError as err:
        log.error("job failed: %s", err)
        failure = {"status": "failed", "reason": str(err), "objective": None}
        write_json_atomic(output_dir / "metrics.json", failure)
        return math.inf


def share_cores(parallel_jobs: int) -> None:
    """Give each of `parallel_jobs` jobs its share of the cores (-1: as many jobs as cores), so
    parallel sweeps do not oversubscribe the machine with torch threads."""
    import torch

    cores = os.cpu_count() or 1
    jobs = cores if parallel_jobs == -1 else max(1, parallel_jobs)
    torch.set_num_threads(max(1, cores // jobs))


class _DropProductTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def tidy_lightning_output() -> None:
    """Call after importing Lightning under Hydra's logging set-up.

    The `lightning` package gives its logger a console handler of its own and still propagates to
    the root handlers that Hydra configures (console and the run's log file), so every line would
    print twice; it advertises a hosted product at every fit; and its pytree helper trips a
    deprecation warning of torch's that users can do nothing about.
    """
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropProductTips())
    warnings.filterwarnings(
        "ignore",
        message=r".*isinstance\(treespec, LeafSpec\)",
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
