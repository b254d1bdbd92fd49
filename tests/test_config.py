"""Every config option composes, and bad values are caught before any work, naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import CONF_DIR, ROOT, compose_config
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from linreg.config import validate
from linreg.config.validation import split_sizes
from linreg.errors import ConfigError

GROUPS = (
    "data",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "debug",
    "split",
    "experiment",
    "hparams_search",
)


def all_options() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


def test_every_shipped_option_is_documented_in_the_configuration_table() -> None:
    table = {
        line.split("|")[1].strip(" `"): line.split("|")[2]
        for line in (ROOT / "docs" / "configuration.md").read_text().splitlines()
        if line.startswith("| `")
    }
    for group, name in all_options():
        if group in ("paths", "hydra"):
            continue
        assert f"`{name}`" in table[group], f"{group}={name} is missing from docs/configuration.md"


@pytest.mark.parametrize(("group", "option"), all_options())
def test_every_option_of_every_group_composes_and_resolves(group: str, option: str) -> None:
    tables_only = ["data=table"] if group == "split" else []  # split=all: every row of a table
    cfg = compose_config([*tables_only, f"{group}={option}"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert set(resolved) >= {"data", "optimizer", "trainer", "export", "seed"}
    if not OmegaConf.missing_keys(cfg):  # data=table needs the user's path and target first
        validate(cfg)


def test_defaults_are_sgd_with_cosine_on_cpu_logging_to_tensorboard() -> None:
    cfg = compose_config()
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.scheduler._target_ == "linreg.models.schedules.WarmupCosine"
    assert cfg.trainer.accelerator == "cpu"
    assert list(cfg.logger) == ["tensorboard"]
    assert cfg.data.seed == cfg.seed


@pytest.mark.parametrize(
    ("overrides", "label"),
    [
        ((), "synthetic-linear-sgd"),
        (("data=table", "data.path=examples/longley.csv", "data.target=TOTEMP", "model=mlp",
          "optimizer=adamw"), "longley-mlp-adamw"),
        (("data=table", "data.path=data/parts/*.parquet", "data.target=y"), "parts-linear-sgd"),
    ],
)  # fmt: skip
def test_a_run_folder_is_named_by_its_data_network_optimizer_then_time(
    overrides: tuple[str, ...], label: str
) -> None:
    """TensorBoard names a run by its folder: what was trained comes first, then when."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    folder = Path(cfg.hydra.run.dir)
    assert folder.parent == Path("outputs/train/runs")
    name, _, time = folder.name.partition("_")
    assert name == label
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", time)


def test_lbfgs_brings_whole_split_batches_and_one_step_per_lightning_step() -> None:
    cfg = compose_config(["optimizer=lbfgs"])
    assert cfg.optimizer.line_search_fn == "strong_wolfe"
    assert cfg.model.steps_per_execution == cfg.data.steps_per_execution == 1
    assert cfg.data.batch_size == 2**20
    # What the command line says still wins.
    assert compose_config(["optimizer=lbfgs", "data.batch_size=4096"]).data.batch_size == 4096


def test_scheduler_none_composes_to_no_scheduler() -> None:
    assert not compose_config(["scheduler=none"]).scheduler


def test_mistyped_key_is_rejected_at_composition_naming_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["data.n_sample=10"])
    assert isinstance(info.value.__cause__, ConfigAttributeError)
    assert info.value.__cause__.full_key == "data.n_sample"


@pytest.mark.parametrize(
    ("override", "key"),
    [("optimizer.lr=abc", "optimizer.lr"), ("data.batch_size=big", "data.batch_size")],
)
def test_wrong_type_is_rejected_at_composition_naming_key(override: str, key: str) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([override])
    cause = info.value.__cause__
    assert isinstance(cause, ValidationError)
    assert cause.full_key == key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.n_samples=0"], "data.n_samples=0 is invalid: must be >= 1"),
        (["data.batch_size=0"], "data.batch_size=0 is invalid: must be >= 1"),
        (["data.noise_std=-1"], "data.noise_std=-1.0 is invalid: must be >= 0"),
        (["optimizer.lr=-1"], "optimizer.lr=-1.0 is invalid: must be > 0"),
        (["optimizer=adam", "optimizer.betas=[0.9,1.5]"], "optimizer.betas=[0.9, 1.5] is invalid"),
        (["data.val_fraction=0"], "data.val_fraction=0.0 is invalid"),
        (
            ["data.train_fraction=0.9"],
            "must add up to 1, got 0.9 + 0.15 + 0.15 = 1.2",
        ),
        (["data.n_samples=5"], "data.n_samples=5 is invalid: too few rows for the val/test splits"),
        (["data.n_features=900", "data.n_samples=1000"], "data.n_features=900 is invalid"),
        (["trainer.accelerator=tpuu"], "trainer.accelerator='tpuu' is invalid: choose one of"),
        (["trainer.precision=8"], "trainer.precision='8' is invalid"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 is invalid"),
        (["objective=val/r2"], "objective='val/r2' is invalid: choose one of val/loss, val/mse"),
        (["model.steps_per_execution=0"], "model.steps_per_execution=0 is invalid: must be >= 1"),
        (
            ["trainer.gradient_clip_val=0.5"],
            "trainer.gradient_clip_val=0.5 is invalid: Lightning applies it at every optimizer "
            "step, so it needs model.steps_per_execution=1 (now 16)",
        ),
        (["trainer.accumulate_grad_batches=4"], "trainer.accumulate_grad_batches=4 is invalid"),
        (["trainer.precision=16-mixed"], "trainer.precision='16-mixed' is invalid"),
        (
            ["optimizer=lbfgs", "model.steps_per_execution=16"],
            "model.steps_per_execution=16 is invalid: torch.optim.LBFGS evaluates the loss",
        ),
        (["data.feature_correlation=1"], "data.feature_correlation=1.0 is invalid: must be in"),
        (["data.target_scale=0"], "data.target_scale=0.0 is invalid: must be > 0"),
        (
            ["model.lr_reference_features=0"],
            "model.lr_reference_features=0 is invalid: must be >= 1, or null",
        ),
    ],
)
def test_invalid_values_raise_one_config_error_naming_key_and_value(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose_config(overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_per_step_trainer_options_are_accepted_with_one_step_per_execution() -> None:
    validate(
        compose_config(
            [
                "model.steps_per_execution=1",
                "trainer.gradient_clip_val=0.5",
                "trainer.accumulate_grad_batches=4",
                "trainer.precision=16-mixed",
            ]
        )
    )


@pytest.mark.parametrize("n_samples", [10, 999, 1000, 20_000])
def test_split_sizes_cover_every_row(n_samples: int) -> None:
    sizes = split_sizes(n_samples, (0.7, 0.15, 0.15))
    assert sum(sizes) == n_samples
    assert sizes[0] == int(n_samples * 0.7)


@pytest.mark.parametrize(
    ("overrides", "steps"), [([], 16), (["model.steps_per_execution=4"], 4), (["debug=overfit"], 1)]
)
def test_the_data_groups_batches_as_the_model_steps_through_the_config(
    overrides: list[str], steps: int
) -> None:
    # The data module learns the model's steps per execution from the config, never from the model.
    cfg = compose_config(overrides)
    assert cfg.model.steps_per_execution == cfg.data.steps_per_execution == steps


def test_the_stochastic_optimizers_ask_for_enough_batches_and_the_command_line_wins() -> None:
    for name in ("adam", "adamw", "rmsprop"):
        cfg = compose_config([f"optimizer={name}"])
        assert cfg.data.min_batches_per_epoch == 64
    for name in ("sgd", "adam", "adamw", "rmsprop"):  # their lr is scaled down beyond 8 features
        assert compose_config([f"optimizer={name}"]).model.lr_reference_features == 8
    assert compose_config(["optimizer=lbfgs"]).model.lr_reference_features is None  # line search
    assert compose_config(["optimizer=sgd"]).data.min_batches_per_epoch == 32
    assert compose_config(["optimizer=lbfgs"]).data.min_batches_per_epoch is None  # whole splits
    kept = compose_config(["optimizer=adam", "model.lr_reference_features=null"])
    assert kept.model.lr_reference_features is None
    chosen = compose_config(["optimizer=adam", "data.min_batches_per_epoch=null"])
    assert chosen.data.min_batches_per_epoch is None
    assert compose_config(["optimizer=adam"]).optimizer.lr == 0.03  # the optimizer's keys stay
