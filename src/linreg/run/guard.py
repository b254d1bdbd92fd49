"""Checks on the run folder that must come before Hydra writes anything into it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from linreg.cli import exit_on_user_error
from linreg.config import validate
from linreg.errors import RunFolderError
from linreg.run.lock import LOCK_FILE, claim, hold_lock, refuse_if_locked
from linreg.serve.formats import check_export


class RunFolderGuard(Callback):
    """Refuses a single run before Hydra creates or writes its folder (config, log), when:

    - the config is invalid (so a mistake leaves no folder that looks like a run);
    - a new run would go into a folder that already holds files (another run's, say);
    - `ckpt_path` names no resumable run, or its overrides change the run, or another process
      is training that run now;
    - another new run started into the same folder at the same moment.

    The run holds its folder's lock (`linreg.run.lock`) from here until the process ends.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Lightning's DDP workers re-run the command line into the folder rank 0 already checked.
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
            return
        exit_on_user_error(lambda: check_run_folder(config))


def check_config(config: DictConfig) -> None:
    """The config's values, and the export's format and options (the format registry is
    serving's, a layer above the config's own checks)."""
    validate(config)
    if config.export.enabled:
        check_export(config.export.filename, config.export.get("options"))


IN_TRAINING = "being trained"


def check_run_folder(config: DictConfig) -> None:
    run_dir = Path(config.hydra.run.dir)
    if config.get("ckpt_path"):
        # Imports torch: resumes only.
        from linreg.run.resume import resumed_config

        refuse_if_locked(run_dir, IN_TRAINING)
        resumed = resumed_config(
            config,
            config.hydra.overrides.task,
            OmegaConf.to_container(config.hydra.runtime.choices),
        )
        check_config(resumed)
        hold_lock(run_dir, IN_TRAINING)
        return
    check_config(config)
    claim(run_dir, IN_TRAINING, _refuse_used)


def _refuse_used(run_dir: Path) -> None:
    held = (
        sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE) if run_dir.is_dir() else []
    )
    if held:
        raise RunFolderError(
            f"hydra.run.dir={run_dir} already holds files ({', '.join(held[:4])}"
            f"{', ...' if len(held) > 4 else ''}); a new run needs a new or empty folder "
            f"(to continue the run in it: ckpt_path={run_dir})"
        )
