"""Lesson 9: Hydra, or how `python train.py optimizer=adam` becomes objects.

A run's settings live in YAML files under conf/, one folder per swappable part (data, model,
optimizer, ...) and one file per option. Hydra composes the chosen files into one config,
applies the command line's overrides on top, and `instantiate` turns a node with a `_target_`
into the object it names. `train.py` is this, plus lessons 4-8.

Run: python docs/tutorial/lesson_09_hydra.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def main() -> dict[str, Any]:
    print("== A config node becomes an object ==")
    node = OmegaConf.create({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.05})
    make_optimizer = instantiate(node)  # _partial_: everything but the parameters, filled later
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(3))])
    print(f"{OmegaConf.to_container(node)} -> a function still waiting for the parameters;")
    print(f"  called with them -> {type(optimizer).__name__}(lr={optimizer.defaults['lr']})")

    print(
        "\n== Composing conf/ with overrides: `python train.py optimizer=adam optimizer.lr=0.01` =="
    )
    overrides = ["optimizer=adam", "optimizer.lr=0.01"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, "paths.output_dir=unused"])
    print(f"conf/optimizer/adam.yaml, then the override:\n{OmegaConf.to_yaml(cfg.optimizer)}")
    chosen = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(3))])
    print(f"instantiated: {type(chosen).__name__} with lr {chosen.defaults['lr']}")
    print(f"the rest comes from the defaults: trainer.max_epochs={cfg.trainer.max_epochs}, "
          f"data.n_samples={cfg.data.n_samples}")  # fmt: skip
    typo_error = None
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            compose(config_name="train", overrides=["optimizer.lrr=0.01"])
    except Exception as err:  # Hydra's ConfigCompositionException
        typo_error = str(err.__cause__ or err).splitlines()[0]
    print(f"a typo is caught before anything runs: {typo_error}")

    print("\n== One multirun: `python train.py -m optimizer=sgd,adam optimizer.lr=0.01,0.1` ==")
    sweep = ["optimizer=sgd,adam", "optimizer.lr=0.01,0.1"]
    parsed = OverridesParser.create().parse_overrides(sweep)
    (jobs,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    for number, job in enumerate(jobs):
        print(f"  job {number}: {' '.join(job)}")
    print("every combination is one run of train.py, in outputs/train/multiruns/<time>/<job>/, and")
    print("the sweep ends with report.md ranking them (README: Sweeps)")

    # What tests/test_tutorial.py checks.
    return {
        "partial_is_callable": callable(make_optimizer), "optimizer_type": type(optimizer).__name__,
        "composed_lr": cfg.optimizer.lr, "composed_type": type(chosen).__name__,
        "typo_error": typo_error, "jobs": [" ".join(job) for job in jobs],
    }  # fmt: skip


if __name__ == "__main__":
    main()
