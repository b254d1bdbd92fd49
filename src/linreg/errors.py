"""User-facing failures: each is shown as one line and ends the run with exit status 1."""


class LinregError(Exception):
    """A user mistake or an unusable result; programmer errors stay ordinary exceptions."""


class ConfigError(LinregError):
    """A config value that is well-typed but cannot work (names the key and the value)."""


class DivergenceError(LinregError):
    """Training produced a non-finite loss, so the weights are unusable."""


class ExportError(LinregError):
    """The exported ONNX model does not reproduce the PyTorch model."""
