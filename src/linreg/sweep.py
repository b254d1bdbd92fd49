"""Hydra callbacks for multiruns: refuse what would corrupt a sweep, and report at its end."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def launches_processes(trainer: DictConfig) -> bool:
    """Whether Lightning would start more processes (DDP with more than one device or node)."""
    devices = trainer.devices
    many_devices = devices == -1 or (isinstance(devices, int) and devices > 1) or (
        isinstance(devices, str) and devices not in ("1", "auto")
    )  # fmt: skip
    return "ddp" in str(trainer.strategy) and (many_devices or trainer.num_nodes > 1)


class SweepCallbacks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Lightning's DDP launcher re-runs the command line in every new process: with `-m`, each
        # of them would re-run the whole sweep into the same folders. Under SLURM the scheduler
        # starts the processes instead, one job at a time, which is safe.
        on_slurm = "SlurmLauncher" in str(config.hydra.launcher.get("_target_", ""))
        if launches_processes(config.trainer) and not on_slurm:
            print(
                "error: multirun (-m) with trainer.strategy=ddp on several devices would re-run "
                "the whole sweep in every DDP process; sweep single-process jobs, or run each DDP "
                "job on its own (or through a cluster launcher, one job per node allocation)",
                file=sys.stderr,
            )
            sys.exit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from linreg.report import markdown, write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_report(sweep_dir)
        print(markdown(rows), end="")
        log.info("sweep report: %s (report.md, report.png)", sweep_dir / "report.csv")
