"""The run's record: the hyper-parameters for loggers, and where the run's time went."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Config sections that define a run's result; paths, loggers and callbacks only say where it went.
HPARAM_SECTIONS = ("data", "model", "optimizer", "scheduler", "trainer", "seed")
# Keys inside them that do not: the run's own folder (different in every run, so HParams would
# mark it as what differs) and how checkpoints are written.
HPARAM_EXCLUDED = ("trainer.default_root_dir", "trainer.plugins")


def flatten_hparams(cfg: DictConfig) -> dict[str, Any]:
    """`optimizer.lr`-style keys with scalar values, as the HParams tab and reports want them."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key != "_partial_":
                    visit(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        else:
            flat[prefix] = str(node)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    visit("", {key: resolved[key] for key in HPARAM_SECTIONS})
    return {key: value for key, value in flat.items() if key not in HPARAM_EXCLUDED}


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
