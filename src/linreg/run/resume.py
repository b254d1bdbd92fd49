"""Resuming a run in its own folder: which checkpoint, with which config, and what may change.

A resume continues the run's saved config from its `last.ckpt`. Overrides on the command line are
accepted when they repeat the saved values (a requeue repeats the original command line); a real
change is refused, naming it, since it would mix two experiments in one folder. The one setting
that may change is `trainer.max_epochs`, upward, and only where no schedule is sized by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from linreg.errors import ConfigError, NothingToDoError, RunFolderError
from linreg.models.module import MAX_EPOCHS_KEY
from linreg.models.schedules import follows_steps
from linreg.runs import (
    find_checkpoint,
    load_checkpoint,
    load_run_choices,
    load_run_config,
    read_summary,
    run_dir_of,
)

MAY_CHANGE = ("ckpt_path", "trainer.max_epochs")


def resumed_config(
    cfg: DictConfig, overrides: Sequence[str], choices: Mapping[str, Any]
) -> DictConfig:
    """The run's own saved config, pointed at its last checkpoint; refuses real changes. Its
    `paths` still name where the run was saved: the caller points them at the folder in use."""
    checkpoint_path = find_checkpoint(cfg.ckpt_path, "last", key="ckpt_path")
    checkpoint = load_checkpoint(checkpoint_path)  # refuses pickled code before Lightning opens it
    run_dir = run_dir_of(checkpoint_path)
    saved = load_run_config(run_dir)
    saved.setdefault("objective", "val/loss")  # runs saved before the key existed watched val/loss
    changed = _changed(cfg, choices, overrides, saved, load_run_choices(run_dir))
    if changed:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} resumes that run with its saved config, and these "
            f"overrides change it: {', '.join(changed)}; only trainer.max_epochs may change"
        )
    check_checkpoint_fits(checkpoint, saved, checkpoint_path)
    longer = any(o.split("=")[0] == "trainer.max_epochs" for o in overrides)
    if longer:
        _check_longer(saved, cfg.trainer.max_epochs, checkpoint["epoch"] + 1)
    _refuse_finished(run_dir, checkpoint, cfg.trainer.max_epochs if longer else None)
    if longer:
        saved.trainer.max_epochs = cfg.trainer.max_epochs
    else:  # the length it was last trained to, which a resume may have extended
        saved.trainer.max_epochs = checkpoint.get(MAX_EPOCHS_KEY, saved.trainer.max_epochs)
    saved.ckpt_path = str(checkpoint_path)
    return saved


def _refuse_finished(run_dir: Path, checkpoint: Mapping[str, Any], max_epochs: int | None) -> None:
    """A run that completed (its metrics.json says so) has nothing to resume unless it is asked
    for more epochs than it trained: one line saying so, instead of its old summary again."""
    summary = read_summary(run_dir) or {}
    epochs = checkpoint["epoch"] + 1
    if summary.get("status") != "completed" or (max_epochs is not None and max_epochs > epochs):
        return
    raise NothingToDoError(
        f"nothing to resume: {run_dir} finished at epoch {epochs} ({summary.get('stopping')}); "
        f"its results are in {run_dir / 'metrics.json'} (to train it longer: "
        "trainer.max_epochs=<more>)"
    )


def check_checkpoint_fits(checkpoint: Mapping[str, Any], run_cfg: DictConfig, path: Path) -> None:
    """Refuses a checkpoint that was trained on other data than the run's config describes (one
    copied in from another run), which would otherwise fail deep inside with a shape error."""
    trained_on = checkpoint.get("datamodule_hyper_parameters") or {}
    data = run_cfg.data
    differ = [
        f"{key}={trained_on[key]} (the run's config: {data[key]})"
        for key in ("n_features", "n_targets", "n_samples", "seed")
        if key in trained_on and key in data and trained_on[key] != data[key]
    ]
    if differ:
        raise RunFolderError(
            f"{path} was not trained on the data of the run it lies in ({run_dir_of(path)}): "
            f"it was trained with data.{', data.'.join(differ)}"
        )
    _check_network_fits(checkpoint, run_cfg, path)


def _check_network_fits(checkpoint: Mapping[str, Any], run_cfg: DictConfig, path: Path) -> None:
    """Refuses a checkpoint of another network than the run's config names (a config edited, a
    checkpoint copied in), before anything is built or written: loading its weights into the
    config's network would fail with a state_dict traceback."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("net") or {}
    net = OmegaConf.select(run_cfg, "model.net")
    if not saved or net is None:
        return
    options = saved.get("options") or {}
    differ = [
        f"model.net.{key}={net[key]} (the checkpoint's: {options[key]})"
        for key in net
        if not key.startswith("_") and key in options and _plain(net[key]) != options[key]
    ]
    if net.get("_target_") != saved.get("target"):
        differ.insert(0, f"model.net._target_={net.get('_target_')} (the checkpoint's: "
                         f"{saved.get('target')})")  # fmt: skip
    if differ:
        raise RunFolderError(
            f"{path} holds another network than its run's config names: {', '.join(differ)}; "
            "resume with the config it was trained with"
        )


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _check_longer(saved: DictConfig, max_epochs: int, done: int) -> None:
    if max_epochs < done:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs} is less than the {done} epochs this run has "
            "already trained; resume with at least that many"
        )
    scheduler = OmegaConf.to_container(saved.scheduler, resolve=False) if saved.scheduler else {}
    sized = [f"scheduler.{key}" for key, value in scheduler.items()
             if "trainer.max_epochs" in str(value)]  # fmt: skip
    if scheduler and follows_steps(instantiate(saved.scheduler)):
        sized.append("per optimizer step")
    if max_epochs > saved.trainer.max_epochs and sized:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs}: this run's schedule ({scheduler.get('_target_')}, "
            f"{sized[0]}) spans its {saved.trainer.max_epochs} epochs and has ended; "
            "training on would restart it from its final learning rate. Train a new run with "
            f"trainer.max_epochs={max_epochs} (runs with scheduler=none, step or plateau can be "
            "trained longer)"
        )


def _changed(
    cfg: DictConfig,
    choices: Mapping[str, Any],
    overrides: Sequence[str],
    saved: DictConfig,
    saved_choices: Mapping[str, Any],
) -> list[str]:
    """The overrides whose value differs from the saved run's: `key=old->new` for each."""
    changed = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in MAY_CHANGE or key.startswith("hydra."):
            continue
        if key in choices:  # a config group: compare which option was chosen
            now, before = choices.get(key), saved_choices.get(key)
        else:
            now, before = _value(cfg, key), _value(saved, key)
        if now != before:
            changed.append(f"{key}={before}->{now}")
    return changed


def _value(cfg: DictConfig, key: str) -> Any:
    node = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=False)
    return node
