"""Score a trained checkpoint on its run's test split: `python eval.py ckpt_path=<run|.ckpt>`."""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from linreg.cli import exit_on_user_error, run_app, tidy_lightning_output


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from pathlib import Path

    from linreg.run.evaluate import evaluate

    tidy_lightning_output()
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    exit_on_user_error(lambda: evaluate(cfg, output_dir))


if __name__ == "__main__":
    run_app(main)
