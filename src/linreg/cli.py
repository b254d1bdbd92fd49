"""Turns the project's user-facing errors into one line on stderr and exit status 1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from linreg.errors import LinregError

T = TypeVar("T")


def exit_on_user_error(run: Callable[[], T]) -> T:
    try:
        return run()
    except LinregError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
