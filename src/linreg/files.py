"""Writing files whole or not at all: a reader, a resume or a full disk never meets half a file."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from linreg.errors import DiskWriteError

# Failures of the file system rather than of the program: reported as one line naming the file.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def write_error(err: OSError, path: Path | str, doing: str = "writing") -> DiskWriteError:
    """A failed file operation as one line naming the file: `no space left on device writing
    <file>`. `doing` is left out where it is not known whether the file was read or written."""
    reason = err.strerror or (os.strerror(err.errno) if err.errno else type(err).__name__)
    return DiskWriteError(
        f"{reason.lower()} {doing} {path}" if doing else f"{reason.lower()}: {path}"
    )


class RunLogFileHandler(logging.FileHandler):
    """The run's log file (`train.log`). logging's own handler prints a traceback for a write
    that fails and carries on; a full disk (or a file-size limit) stops the run instead, with one
    line naming the file, once: the lines that then report it must not fail on it again."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        err = sys.exc_info()[1]
        if not (isinstance(err, OSError) and err.errno in DISK_ERRNOS):
            super().handleError(record)
        elif not self.failed:
            self.failed = True
            raise write_error(err, self.baseFilename) from err


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; renamed over `path` only when the
    block succeeds, removed otherwise. The file gets the usual permissions (those of the file it
    replaces, or the umask's), not a temporary file's 0600. The temporary name keeps the suffix,
    which says what the file is to whatever writes or reads it (a model's format, numpy's .npy)."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(err, path) from err
    finally:
        tmp.unlink(missing_ok=True)


def strict_json(value: Any) -> Any:
    """`value` with every NaN and infinity replaced by None: JSON has no token for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Strict JSON (non-finite numbers as null), written whole or not at all."""
    text = json.dumps(strict_json(payload), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
