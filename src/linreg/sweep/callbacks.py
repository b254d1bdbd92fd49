"""Hydra callbacks for multiruns: refuse what would corrupt a sweep (DDP jobs, two sweeps in one
folder), and report at its end."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from linreg.cli import exit_on_user_error
from linreg.errors import RunFolderError
from linreg.run.lock import claim

SWEEPING = "being swept"


def device_count(accelerator: str, devices: Any) -> int:
    """How many devices Lightning would use for `trainer.devices`, in any of its spellings: a
    count, -1 or "auto" (all of them), "2", "0,1", or a list of indices."""
    if isinstance(devices, str):
        devices = devices.strip()
        if devices not in ("auto", "-1"):
            parts = [part for part in devices.split(",") if part.strip()]
            return len(parts) if "," in devices else int(devices)
        devices = -1
    if not isinstance(devices, int):  # a list of device indices
        return len(devices)
    if devices != -1:
        return devices
    if accelerator == "cpu":  # Lightning runs "auto" on the CPU as one process
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def launches_processes(trainer: DictConfig) -> bool:
    """Whether Lightning would start more processes: it runs DDP whenever a run spans more than
    one device or node, whatever `trainer.strategy` says."""
    return device_count(str(trainer.accelerator), trainer.devices) > 1 or trainer.num_nodes > 1


def claim_sweep_folder(config: DictConfig) -> None:
    """Holds the sweep folder's lock for this process, before any job is written into it, and
    refuses a folder that holds another sweep (its report would mix the two) or, unless the
    sweeper resumes (declares `resumes = True`, as `hparams_search=optuna` does), this sweep's
    jobs already (they would run again into their own folders)."""
    claim(Path(config.hydra.sweep.dir), SWEEPING, lambda folder: _refuse_held(folder, config))


def _refuse_held(sweep_dir: Path, config: DictConfig) -> None:
    earlier = sweep_dir / "multirun.yaml"
    if not earlier.is_file():
        return
    before = list(OmegaConf.load(earlier).hydra.overrides.task)
    if before != list(config.hydra.overrides.task):
        raise RunFolderError(
            f"hydra.sweep.dir={sweep_dir} holds another sweep ({' '.join(before) or 'no overrides'}"
            "); one folder holds one sweep: choose a new hydra.sweep.dir"
        )
    if not getattr(get_class(config.hydra.sweeper._target_), "resumes", False):
        raise RunFolderError(
            f"hydra.sweep.dir={sweep_dir} holds this sweep's jobs already, and a grid sweep is not "
            f"resumed: choose a new hydra.sweep.dir (the report of that one: python -m "
            f"linreg.sweep.report {sweep_dir})"
        )


class SweepCallbacks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Lightning's DDP launcher re-runs the command line in every new process: with `-m`, each
        # of them would re-run the whole sweep into the same folders. Under SLURM the scheduler
        # starts the processes instead, one job at a time, which is safe.
        on_slurm = "SlurmLauncher" in str(config.hydra.launcher.get("_target_", ""))
        if on_slurm and shutil.which("srun") is None:
            print(
                "error: hydra/launcher=slurm submits jobs with SLURM's sbatch and srun, and this "
                "machine has no srun: run the sweep on the cluster, or try it here with "
                "hydra/launcher=submitit_local",
                file=sys.stderr,
            )
            sys.exit(1)
        if launches_processes(config.trainer) and not on_slurm:
            print(
                "error: multirun (-m) over runs on several devices or nodes (Lightning starts DDP "
                "for them) would re-run the whole sweep in every DDP process; sweep single-process "
                "jobs, or run each DDP job on its own (or through a cluster launcher, one job per "
                "node allocation)",
                file=sys.stderr,
            )
            sys.exit(1)
        exit_on_user_error(lambda: claim_sweep_folder(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from linreg.sweep.report import markdown, write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        # Hydra turns a callback's exception into a warning and exit status 0: say it, and fail.
        try:
            rows = write_report(sweep_dir)
        except Exception as err:
            print(f"error: the sweep report could not be written: {err}", file=sys.stderr)
            sys.exit(1)
        print(markdown(rows), end="")
        print(f"sweep report     {sweep_dir / 'report.csv'} (report.md, report.png)", flush=True)
