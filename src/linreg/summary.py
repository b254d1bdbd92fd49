"""The run's record: `metrics.json` in the run folder, and the hyper-parameters for loggers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Config sections that define a run's result; paths, loggers and callbacks only say where it went.
HPARAM_SECTIONS = ("data", "model", "optimizer", "scheduler", "trainer", "seed")


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
    return flat


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write via a temporary file and rename, so a reader never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


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
