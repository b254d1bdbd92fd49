"""The config resolvers `conf/hydra/default.yaml` uses: a run's folder is named by its data,
network and optimizer (a resumed run goes back to its folder), and a sweep job's folder by the
settings the sweep varies."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from omegaconf import OmegaConf

from linreg.config.job_names import settings_label, split_override

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


def run_label(choices: Mapping[str, object], data_path: object = None) -> str:
    """`synthetic-linear-sgd`, `grunfeld-linear-adamw`: a single run's data (its file's name for a
    table), network and optimizer, the first thing its folder and TensorBoard's run name say."""
    data = choices.get("data")
    if isinstance(data_path, str):  # a table by its file's name, files by their folder's
        path = Path(data_path)
        data = path.parent.name if any(mark in path.name for mark in "*?[") else path.stem
    parts = [data, choices.get("model"), choices.get("optimizer")]
    return _UNSAFE.sub("_", "-".join(str(part) for part in parts if part))[:_NAME_LIMIT] or "run"


def swept_values(
    sweep_dir: str, sweeper_params: Mapping[str, object] | None
) -> dict[str, list[str] | None]:
    """The keys a multirun varies, each with its values where they are a list (`optimizer=sgd,adam`,
    `range(1,4)`) and None where they are searched (Optuna's `interval(0.001, 0.1)`): its
    sweeper's `params` (ready-made grids, Optuna's search space) and the command line's sweeps,
    which Hydra's basic sweeper keeps in <sweep folder>/multirun.yaml before the first job
    starts."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = dict(sweeper_params or {})
    swept: list[str] = []
    saved = Path(sweep_dir) / "multirun.yaml"
    if saved.is_file():
        master = OmegaConf.load(saved)
        params.update(OmegaConf.select(master, "hydra.sweeper.params", default=None) or {})
        swept = list(OmegaConf.select(master, "hydra.overrides.task", default=None) or [])
    parser = OverridesParser.create()
    values: dict[str, list[str] | None] = {key: None for key in params}
    lines = swept + [f"{key}={spec}" for key, spec in params.items() if isinstance(spec, str)]
    for line in lines:
        try:
            (override,) = parser.parse_overrides([line])
            if override.is_sweep_override() or override.key_or_group in values:
                values[override.key_or_group] = list(override.sweep_string_iterator())
        except Exception:  # a searched distribution (Optuna's), not a list of values
            values[split_override(line)[0]] = None
    return values


GRID_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_job_dir(
    job_num: int,
    job_overrides: Iterable[str],
    sweeper_params: Mapping[str, object] | None,
    sweep_dir: str,
    sweeper: str = GRID_SWEEPER,
    choices: Mapping[str, object] | None = None,
) -> str:
    """`adamw`, `lr=0.03`, `adamw,lr=0.03`: the values of the settings a grid varies (a group's
    choice by its name alone), so TensorBoard's run names and the report tell jobs apart at a
    glance. A search's trials (which may draw the same values twice), and a grid whose values would
    read alike (`lr=0.1,0.1`, or two long numbers equal to four digits), keep their number in
    front so that folders never collide: `3-lr=0.002435`."""
    varied = swept_values(sweep_dir, sweeper_params)
    settings = [setting for setting in map(split_override, job_overrides) if setting[0] in varied]
    groups = set(choices or ())
    name = _safe(settings_label(settings, groups=groups))
    grid = sweeper == GRID_SWEEPER and all(
        values is not None
        and len({_safe(settings_label([(key, value)], groups=groups)) for value in values})
        == len(values)
        for key, values in varied.items()
    )
    if name and grid:
        return name
    return f"{job_num}-{name}" if name else str(job_num)


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:_NAME_LIMIT]


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("linreg.run_dir", resumed_run_dir, replace=True)
    OmegaConf.register_new_resolver("linreg.config_subdir", saved_config_subdir, replace=True)
    OmegaConf.register_new_resolver("linreg.sweep_job_dir", sweep_job_dir, replace=True)
    OmegaConf.register_new_resolver("linreg.run_label", run_label, replace=True)
