"""Score a saved checkpoint on the test split of the data its run was trained on, or on another
table."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

from linreg.console import show_evaluation
from linreg.errors import ConfigError
from linreg.files import write_json_atomic
from linreg.models.module import RegressionModule
from linreg.models.network import Network
from linreg.run.build import build_datamodule, require_accelerator
from linreg.run.resume import check_checkpoint_fits
from linreg.runs import find_checkpoint, load_checkpoint, load_run_config, run_dir_of

TABLE_DATAMODULE = "linreg.data.table.TableDataModule"


def evaluate(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    """Test metrics of `cfg.ckpt_path`, computed as in training, on its run's test split or on
    every row of another table; also written to metrics.json."""
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ConfigError("ckpt_path is required: python eval.py ckpt_path=<run folder or .ckpt>")
    require_accelerator(cfg.accelerator)
    checkpoint_path = find_checkpoint(cfg.ckpt_path, "best", key="ckpt_path")
    checkpoint = load_checkpoint(checkpoint_path)
    run_dir = run_dir_of(checkpoint_path)
    run_cfg = load_run_config(run_dir)
    check_checkpoint_fits(checkpoint, run_cfg, checkpoint_path)
    module = RegressionModule.from_checkpoint(checkpoint, checkpoint_path)
    data = run_cfg.data
    if cfg.data.path:
        data = another_table(run_cfg.data, cfg.data.path, module.net)
    datamodule = build_datamodule(data)
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    summary = {
        "checkpoint": str(checkpoint_path),
        "run_dir": str(run_dir),
        "data": cfg.data.path or "the run's test split",
        "rows": len(datamodule.split("test")[0]) if not datamodule.streaming else None,
        "metrics": metrics,
    }
    write_json_atomic(output_dir / "metrics.json", summary)
    show_evaluation(summary, output_dir)
    return metrics


def another_table(run_data: DictConfig, path: str, network: Network) -> DictConfig:
    """The run's data config pointed at another table, whose rows all form the test split and
    whose columns are chosen by the names the model was trained on."""
    if run_data.get("_target_") != TABLE_DATAMODULE:
        raise ConfigError(
            f"data.path={path}: this model was trained on {run_data.get('_target_')}, not on a "
            "table; score a table model (trained with data=table) on another table"
        )
    data = OmegaConf.create(OmegaConf.to_container(run_data, resolve=True))
    # A model with a design reads its raw columns and encodes them as it was trained to.
    features = None if network.design else network.feature_names
    data.merge_with({
        "path": path, "features": features, "target": network.target_names,
        "design": network.design, "formula": None, "categorical": None,
        "split_column": None, "train_fraction": 1.0, "val_fraction": 0.0, "test_fraction": 0.0,
        "streaming": False,
    })  # fmt: skip
    return data
