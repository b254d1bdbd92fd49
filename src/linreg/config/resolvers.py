"""The config resolvers `conf/hydra/default.yaml` uses: a resumed run goes back to its folder, and
a sweep job's folder is named by the settings the sweep varies."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from omegaconf import OmegaConf

# Characters a job name keeps as they are; anything else (a path's "/", spaces, quotes) becomes "_".
_UNSAFE = re.compile(r"[^\w.=,+-]")
_NAME_LIMIT = 120


def resumed_run_dir(ckpt_path: str | None, new_run_dir: str) -> str:
    """Hydra's run folder: a resumed run (ckpt_path set) continues in the folder it came from."""
    if not ckpt_path:
        return new_run_dir
    from linreg.runs import run_dir_of  # imports torch: only paid when resuming

    return str(run_dir_of(ckpt_path))


def saved_config_subdir(ckpt_path: str | None, timestamp: str) -> str:
    """Where Hydra saves the composed config: a resume must not overwrite the run's original."""
    return f".hydra/resumed/{timestamp}" if ckpt_path else ".hydra"


def swept_keys(sweep_dir: str, sweeper_params: Mapping[str, object] | None) -> set[str]:
    """The keys a multirun varies: its sweeper's `params` (ready-made grids, Optuna's search
    space) and the command line's sweeps (`optimizer=sgd,adam`), which Hydra's basic sweeper keeps
    in <sweep folder>/multirun.yaml before the first job starts."""
    keys = set(sweeper_params or {})
    saved = Path(sweep_dir) / "multirun.yaml"
    if saved.is_file():
        from hydra.core.override_parser.overrides_parser import OverridesParser

        master = OmegaConf.load(saved)
        overrides = OverridesParser.create().parse_overrides(list(master.hydra.overrides.task))
        keys |= {override.key_or_group for override in overrides if override.is_sweep_override()}
        keys |= set(master.hydra.sweeper.get("params") or {})
    return keys


def sweep_job_dir(
    job_num: int,
    job_overrides: Iterable[str],
    sweeper_params: Mapping[str, object] | None,
    sweep_dir: str,
) -> str:
    """`3-optimizer=adam,lr=0.01`: the job's number (folders never collide) and the values of the
    settings the sweep varies, so TensorBoard's run names and the report tell jobs apart."""
    from linreg.config.job_names import settings_label, split_override

    varied = swept_keys(sweep_dir, sweeper_params)
    settings = [setting for setting in map(split_override, job_overrides) if setting[0] in varied]
    name = _UNSAFE.sub("_", settings_label(settings))[:_NAME_LIMIT]
    return f"{job_num}-{name}" if name else str(job_num)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("linreg.run_dir", resumed_run_dir, replace=True)
    OmegaConf.register_new_resolver("linreg.config_subdir", saved_config_subdir, replace=True)
    OmegaConf.register_new_resolver("linreg.sweep_job_dir", sweep_job_dir, replace=True)
