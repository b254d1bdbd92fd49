"""The run's record: `metrics.json` in the run folder, and the hyper-parameters for loggers."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from linreg.errors import RunFolderError, first_line

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


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's metrics.json, None if it has none; one line if it is damaged."""
    summary = run_dir / "metrics.json"
    if not summary.is_file():
        return None
    try:
        record = json.loads(summary.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = first_line(err)
        raise RunFolderError(f"{summary} is damaged: not readable JSON ({reason})") from err
    if not isinstance(record, dict):
        raise RunFolderError(f"{summary} is damaged: not a run record")
    return record


def require_usable(run_dir: Path, key: str) -> None:
    """Refuses a run folder whose record says the run failed: its checkpoints (if any) are from
    before the failure, and serving them should be a deliberate choice of one file."""
    record = read_summary(run_dir) or {}
    if record.get("status", "completed") != "completed":
        raise RunFolderError(
            f"{key}={run_dir}: that run {record['status']} ({record.get('reason', 'no reason')}); "
            "pass one of its checkpoint files to use it anyway"
        )


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
