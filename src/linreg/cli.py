"""What the user sees on the console: one-line errors, library logs without repeats or ads."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from linreg.errors import LinregError

T = TypeVar("T")


def exit_on_user_error(run: Callable[[], T]) -> T:
    """Runs `run`; a LinregError becomes `error: <message>` on stderr and its exit status (1)."""
    try:
        return run()
    except LinregError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


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
