"""Train, test, export and verify one model: `python train.py [group=option] [key=value] ...`."""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from linreg.cli import in_sweep, run_app, run_job, share_cores, tidy_lightning_output


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from linreg.run.pipeline import train  # imported here so `--help` and `--cfg` skip Lightning

    tidy_lightning_output()
    hydra_cfg = HydraConfig.get()
    share_cores(hydra_cfg.launcher.get("n_jobs", 1))
    return run_job(
        lambda: train(cfg, hydra_cfg.overrides.task, hydra_cfg.runtime.choices),
        output_dir=Path(cfg.paths.output_dir),
        in_sweep=in_sweep(),
    )


if __name__ == "__main__":
    run_app(main)
