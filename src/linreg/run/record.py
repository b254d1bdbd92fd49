"""The run's record: the hyper-parameters for loggers, and where the run's time went."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Config sections that define a run's result; paths, loggers and callbacks only say where it went.
HPARAM_SECTIONS = ("data", "model", "optimizer", "scheduler", "trainer", "seed")
# Keys inside them that do not: the run's own folder (different in every run, so HParams would
# mark it as what differs) and how checkpoints are written.
HPARAM_EXCLUDED = ("trainer.default_root_dir", "trainer.plugins")
# Config groups whose choice is a hyper-parameter of its own (`optimizer: adamw`), in place of the
# class it names (`optimizer._target_`).
HPARAM_GROUPS = ("data", "model", "optimizer", "scheduler", "split")
# Settings an optimizer's YAML tunes in another section (conf/optimizer/): they follow from the
# choice, so they are hyper-parameters only where the command line sets them. Otherwise a sweep of
# optimizers would lead with `data.min_batches_per_epoch`, not with what the user varied.
HPARAM_DERIVED = ("data.min_batches_per_epoch", "model.lr_reference_features")


def flatten_hparams(
    cfg: DictConfig, choices: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """`optimizer.lr`-style keys with scalar values, as the HParams tab and reports want them:
    each group's choice (`choices`, Hydra's) by name, then the settings, less the classes the
    choices name and the derived settings the command line (`overrides`) does not set."""
    from linreg.config.job_names import split_override

    set_by_user = {split_override(override)[0] for override in overrides}
    flat: dict[str, Any] = {
        group: str(choices[group]) for group in HPARAM_GROUPS if (choices or {}).get(group)
    }

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key not in ("_partial_", "_target_"):
                    visit(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        else:
            flat[prefix] = str(node)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    visit("", {key: resolved[key] for key in HPARAM_SECTIONS})
    derived = set(HPARAM_DERIVED) - set_by_user
    return {key: value for key, value in flat.items() if key not in {*HPARAM_EXCLUDED, *derived}}


class StageClock:
    """Wall time per pipeline stage (setup, fit, test, ...): where a run's time goes."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(now - self._last, 3)
        self._last = now

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)
