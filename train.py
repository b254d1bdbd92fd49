"""Train, test, export and verify one model: `python train.py [group=option] [key=value] ...`."""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import linreg.config  # noqa: F401  (registers the config schemas)
from linreg.cli import exit_on_user_error, tidy_lightning_output


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from linreg.pipeline import train  # imported here so `--help` and `--cfg` skip Lightning

    tidy_lightning_output()
    return exit_on_user_error(lambda: train(cfg, overrides=HydraConfig.get().overrides.task))


if __name__ == "__main__":
    main()
