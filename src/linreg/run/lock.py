"""One process at a time in a run or sweep folder: an advisory lock (`.lock`) held from before
anything is written into the folder until the process ends, however it ends (the kernel releases
it with the process, so a killed run leaves no stale lock behind)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from linreg.errors import RunFolderError

LOCK_FILE = ".lock"
_held: list[TextIO] = []  # open for the life of the process: the lock goes with it


def claim(folder: Path, doing: str, refuse_used: Callable[[Path], None]) -> None:
    """Takes `folder` for this process: refused where another process holds it, or where
    `refuse_used` finds it holds another run's work; checked before the lock file is created (so
    a refusal writes nothing into another's folder) and again once the lock is held (a process
    started at the same moment may have written first)."""
    refuse_if_locked(folder, doing)
    refuse_used(folder)
    hold_lock(folder, doing)
    refuse_used(folder)


def hold_lock(folder: Path, doing: str) -> None:
    """Takes `folder`'s lock for this process (creating the folder), or refuses in one line when
    another process holds it; `doing` says what the holder does there (`being trained`)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise _held_by(folder, doing, holder) from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()}")
    handle.flush()
    _held.append(handle)


def refuse_if_locked(folder: Path, doing: str) -> None:
    """Refuses a folder another process holds now, without creating or changing a file (before
    anything else is said of the folder: that its run finished, say)."""
    lock = folder / LOCK_FILE
    if not lock.is_file():
        return
    with lock.open() as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _held_by(folder, doing, handle.read().strip()) from None


def _held_by(folder: Path, doing: str, holder: str) -> RunFolderError:
    return RunFolderError(
        f"{folder} is {doing} by {holder or 'another process'} right now; wait for it to "
        "finish, or choose another folder"
    )
