"""Finding things in a run folder, and loading checkpoints without running pickled code.

A run folder (see the README) holds `.hydra/config.yaml`, `checkpoints/{epochNNN,last}.ckpt`,
`model.onnx` and `metrics.json`. Commands accept either the folder or a file inside it.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Literal

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from linreg.errors import RunFolderError, first_line

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
SAVED_CONFIG = Path(".hydra") / "config.yaml"


def run_dir_of(path: str | Path) -> Path:
    """The run folder a path names: the folder itself, or the folder a checkpoint lies in."""
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


def find_checkpoint(path: str | Path, which: Literal["best", "last"], key: str) -> Path:
    """The checkpoint `path` names: a .ckpt file as is, or a run folder's best or last one."""
    path = Path(path)
    if not path.exists():
        raise RunFolderError(f"{key}={path}: no such file or folder")
    if path.is_file():
        return path
    if which == "last":
        candidate = path / CHECKPOINT_DIR / LAST_CHECKPOINT
    else:
        require_usable(path, key)
        candidate = _best_checkpoint(path)
    if not candidate.is_file():
        raise RunFolderError(f"{key}={path}: no {which} checkpoint in {path / CHECKPOINT_DIR}")
    return candidate


def _best_checkpoint(run_dir: Path) -> Path:
    recorded = (read_summary(run_dir) or {}).get("paths") or {}
    if recorded.get("best_checkpoint"):
        return run_dir / recorded["best_checkpoint"]
    # An interrupted run records none: its best checkpoint is the newest readable one not last.
    candidates = sorted(
        (p for p in (run_dir / CHECKPOINT_DIR).glob("*.ckpt") if p.name != LAST_CHECKPOINT),
        reverse=True,
    )
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
        except RunFolderError:
            continue  # damaged (a copy cut short, say): an older whole one is better than none
        return candidate
    return run_dir / CHECKPOINT_DIR / "best.ckpt"


def load_run_config(run_dir: Path) -> DictConfig:
    """The config a run was trained with, as Hydra saved it."""
    saved = run_dir / SAVED_CONFIG
    if not saved.is_file():
        raise RunFolderError(f"{run_dir} is not a run folder: {SAVED_CONFIG} is missing")
    config = _load_yaml(saved)
    if not isinstance(config, DictConfig) or "data" not in config:
        raise RunFolderError(f"{saved} is damaged: it holds no run config")
    return config


def _load_yaml(path: Path) -> DictConfig | ListConfig:
    try:
        return OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:
        raise RunFolderError(f"{path} is damaged: not readable YAML ({first_line(err)})") from err


def load_checkpoint(path: Path) -> dict[str, Any]:
    """`torch.load(weights_only=True)` with one-line errors: pickled code is refused, never run."""
    import torch  # not at the top: predict.py reads run folders without torch for ONNX models

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # A refused global reads "Unsupported global: GLOBAL x" or "GLOBAL posix.system whose
        # module posix is blocked"; a damaged file fails on a byte ("Unsupported operand 110").
        if "GLOBAL " in str(err):
            raise RunFolderError(
                f"refusing to load {path}: it holds pickled objects other than tensors and plain "
                "values, which could run code (checkpoints are loaded with weights_only=True)"
            ) from err
        raise RunFolderError(
            f"{path} is not a readable checkpoint: not a PyTorch file, or damaged"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise RunFolderError(f"{path} is not a readable checkpoint: {first_line(err)}") from err


def load_run_choices(run_dir: Path) -> dict[str, Any]:
    """Which option of each config group the run was composed from (Hydra's runtime choices)."""
    saved = run_dir / SAVED_CONFIG.parent / "hydra.yaml"
    if not saved.is_file():
        return {}
    return dict(OmegaConf.select(_load_yaml(saved), "hydra.runtime.choices", default={}))


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
