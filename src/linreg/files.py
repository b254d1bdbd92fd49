"""Writing files whole or not at all: a reader, a resume or a full disk never meets half a file."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
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
