"""User-facing failures: each is shown as one line and ends the run with exit status 1."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, for wrapping a library's error in one of ours;
    a first line that ends in a colon (`Error loading 'x':`) goes on with the lines after it."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    taken = 1
    while lines[taken - 1].endswith(":") and taken < len(lines):
        taken += 1
    return " ".join(lines[:taken])


class LinregError(Exception):
    """A user mistake or an unusable result; programmer errors stay ordinary exceptions."""

    exit_code = 1


class ConfigError(LinregError):
    """A config value that is well-typed but cannot work (names the key and the value)."""


class RunFolderError(LinregError):
    """A path that should lead to a run folder, checkpoint or model does not."""


class DivergenceError(LinregError):
    """Training produced a non-finite loss, so the weights are unusable."""


class ExportError(LinregError):
    """The exported ONNX model does not reproduce the PyTorch model."""


class RunInterruptedError(LinregError):
    """The run was asked to stop: SIGTERM (as schedulers send before pre-emption) or Ctrl-C."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # what a shell reports for a process ended by that signal


class DiskWriteError(LinregError):
    """A file could not be written: a full disk, a read-only folder, a file-size limit."""


class NothingToDoError(LinregError):
    """The command has nothing left to do (a resume of a run that finished): said in one line, and
    not a failure (exit status 0), so a requeued job that already finished ends quietly."""

    exit_code = 0
