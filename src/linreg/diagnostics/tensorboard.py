"""The TensorBoard logger the runs use: Lightning's, with runs that compare in the HParams tab and
a Custom Scalars tab that tells a run's story in order."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from linreg.files import DISK_ERRNOS

# Custom Scalars: loss first (training within and across epochs beside validation and least
# squares on one chart), then the learning rate, the validation metrics, and how far the
# parameters are from the truth.
STORY_LAYOUT = {
    "1 loss and learning rate": {
        "loss: train/loss (within epochs), train/epoch_loss, val/loss; least squares on the "
        "training rows (reference/train_mse), the floor of the training loss": [
            "Multiline",
            ["^train/loss$", "^train/epoch_loss$", "^val/loss$", "^reference/train_mse$"]],
        "learning rate": ["Multiline", ["^train/lr$"]],
        "gradient norm": ["Multiline", ["^train/grad_norm$"]],
    },
    # One unit per chart: squared target units, target units, fractions; a relative error and an
    # absolute one apart (on one axis, the larger flattens the other).
    "2 validation metrics": {
        "val/mse (target units squared)": ["Multiline", ["^val/mse$"]],
        "val/mae (target units)": ["Multiline", ["^val/mae$"]],
        "val/r2, val/explained_variance (fractions)": [
            "Multiline", ["^val/r2$", "^val/explained_variance$"]],
        "val/1-r2: the fraction of the variance left unexplained (readable where r2 is 0.999)": [
            "Multiline", ["^val/1-r2$"]],
    },
    "3 parameters": {
        "weight error (relative to the true weights' norm)": [
            "Multiline", ["^params/weight_error$"]],
        "bias error (target units)": ["Multiline", ["^params/bias_error$"]],
    },
}  # fmt: skip


def _report_writer_disk_errors_once() -> None:
    """TensorBoard writes events from a thread of its own; when the disk fills (or a file-size
    limit is reached) the thread dies printing a traceback, and TensorBoard raises the same error
    again at the run's next write, with no file name. Such an error is named here (its events
    file) and left to that next write, which stops the run with one line; the thread prints
    nothing. Any other thread's failure is printed as before."""
    previous = threading.excepthook
    if getattr(previous, "__module__", None) == __name__:
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        err = args.exc_value
        if not (
            isinstance(err, OSError)
            and err.errno in DISK_ERRNOS
            and type(args.thread).__module__.startswith("tensorboard.")
        ):
            previous(args)
            return
        if not err.filename:  # the file the thread writes to, where this TensorBoard says it
            stream = getattr(getattr(args.thread, "_record_writer", None), "_writer", None)
            name = getattr(stream, "filename", None)
            err.filename = os.fsdecode(name) if name else None

    threading.excepthook = hook


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning adds an `epoch` value to every write; in TensorBoard it became a staircase chart
    at the top of the Scalars tab that says nothing the step axis and the epoch lines do not.
    Other loggers (CSV) keep it as a column."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        new = self._experiment is None
        writer = super().experiment
        if new:
            _report_writer_disk_errors_once()
            writer.add_custom_scalars(STORY_LAYOUT)
        return writer

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Also `<stage>/1-r2` beside each `<stage>/r2`: an R² of 0.9991 to 0.9995 reads 0.999 on
        every tick of TensorBoard's charts, what it leaves unexplained reads 0.0009 to 0.0005."""
        shown = {key: value for key, value in metrics.items() if key != "epoch"}
        shown |= {key[: -len("r2")] + "1-r2": 1 - value
                  for key, value in shown.items() if key.endswith("/r2")}  # fmt: skip
        super().log_metrics(shown, step)

    @rank_zero_only
    def log_hyperparams(
        self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        """The run's session (its settings and status) without an HParams experiment summary.
        With one per run, TensorBoard shows an arbitrary run's: its keys only (another optimizer's
        settings missing) and none marked as differing. Without any, TensorBoard builds the
        experiment from every run's session: all keys, the differing ones first and ticked (the
        first five, by name: a group's choice, `optimizer`, before its settings)."""
        params = self._sanitize_params(_flatten_dict(_convert_params(params)))
        self.hparams.update(params)  # hparams.yaml, as Lightning keeps it
        if not metrics:
            return
        from torch.utils.tensorboard.summary import hparams

        self.log_metrics(metrics, step)
        _, session_start, session_end = hparams(_whole_numbers_as_text(params), metrics)
        writer = self.experiment._get_file_writer()
        writer.add_summary(session_start, step)
        writer.add_summary(session_end, step)


def _whole_numbers_as_text(params: Mapping[str, Any]) -> dict[str, Any]:
    """HParams prints every number to five digits (`256.00`); a whole-number setting (a batch
    size, a seed) reads as the user typed it when given as text."""
    return {
        key: str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        for key, value in params.items()
    }
