"""Networks, standardisation, the module, and every optimizer/scheduler of the configs."""

from __future__ import annotations

import math
from functools import partial

import lightning.pytorch as pl
import pytest
import torch
from conftest import compose_config, options
from hydra.utils import instantiate

from linreg.errors import RunFolderError
from linreg.models.linear import LinearRegressor
from linreg.models.metrics import RunningLoss, evaluate
from linreg.models.mlp import MLP
from linreg.models.module import RegressionModule
from linreg.models.network import network_from_checkpoint
from linreg.models.schedules import WarmupCosine, build_scheduler

OPTIMIZERS = options("optimizer")
SCHEDULERS = options("scheduler")


def test_standardisation_uses_the_statistics_it_was_fitted_on() -> None:
    regressor = LinearRegressor(3, 1)
    train = torch.randn(500, 3) * torch.tensor([1.0, 10.0, 100.0]) + 7
    regressor.standardize.fit_(train)
    standardized = regressor.standardize(train)
    torch.testing.assert_close(standardized.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(standardized.std(0), torch.ones(3), atol=1e-4, rtol=0)
    other = torch.randn(500, 3) + 100
    assert regressor.standardize(other).mean().abs() > 1


def test_constant_feature_is_left_unscaled_instead_of_dividing_by_zero() -> None:
    regressor = LinearRegressor(2, 1)
    regressor.standardize.fit_(torch.stack([torch.randn(50), torch.full((50,), 3.0)], dim=1))
    assert regressor.standardize.std[1] == 1.0
    assert torch.isfinite(regressor(torch.ones(4, 2))).all()


def correlated(n_rows: int, correlation: float) -> torch.Tensor:
    shared = torch.randn(n_rows, 1)
    return 5 + 3 * ((1 - correlation) ** 0.5 * torch.randn(n_rows, 4) + correlation**0.5 * shared)


def test_decorrelation_makes_nearly_repeated_columns_uncorrelated_and_drops_exact_repeats() -> None:
    torch.manual_seed(0)
    regressor = LinearRegressor(4, 1)
    features = correlated(5000, 0.99)
    regressor.fit_standardization(features, torch.randn(5000, 1))
    whitened = regressor.decorrelate(regressor.standardize(features))
    torch.testing.assert_close(torch.cov(whitened.T), torch.eye(4), atol=1e-3, rtol=0)
    # A column that is the sum of two others adds no direction: it is dropped, not blown up.
    repeated = torch.cat([features[:, :3], features[:, :2].sum(1, keepdim=True)], dim=1)
    regressor.fit_standardization(repeated, torch.randn(5000, 1))
    covariance = torch.cov(regressor.decorrelate(regressor.standardize(repeated)).T)
    assert torch.linalg.matrix_rank(covariance, atol=1e-3) == 3
    assert covariance.diagonal().max() < 1 + 1e-3


def test_the_trained_function_is_the_exported_one_with_every_standardisation_folded() -> None:
    torch.manual_seed(0)
    regressor = LinearRegressor(4, 2)
    features = correlated(300, 0.9)
    regressor.fit_standardization(features, 1e4 * torch.randn(300, 2) + 5e5)
    torch.nn.init.normal_(regressor.linear.weight)
    torch.nn.init.normal_(regressor.linear.bias)
    weight, bias = regressor.coefficients()
    regressor.eval()
    expected = regressor(features).double()
    folded = features.double() @ weight.double().T + bias.double()
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=0.0)
    standardized = regressor.standardized(features)
    torch.testing.assert_close(regressor.target_standardize.restore(standardized), expected.float())
    regressor.train()  # training takes the folded path to standardised targets
    torch.testing.assert_close(regressor.standardized(features), standardized, rtol=1e-4, atol=1e-4)


def test_fitting_the_standardisation_starts_predictions_at_the_training_targets_mean() -> None:
    regressor = LinearRegressor(3, 2)
    targets = torch.tensor([[1e4, -3.0]]) + torch.randn(100, 2) * torch.tensor([[50.0, 0.1]])
    regressor.fit_standardization(torch.randn(100, 3), targets)
    prediction = regressor.eval()(torch.zeros(1, 3) + regressor.standardize.mean)
    torch.testing.assert_close(prediction[0], targets.mean(0), rtol=1e-6, atol=1e-4)


def test_hyper_parameters_are_plain_values_that_name_the_network() -> None:
    module = RegressionModule(MLP(3, 2, hidden_sizes=[5]), optimizer=torch.optim.SGD)
    assert dict(module.hparams) == {
        "net": {
            "target": "linreg.models.mlp.MLP",
            "options": {
                "n_features": 3,
                "n_targets": 2,
                "feature_names": ["x0", "x1", "x2"],
                "target_names": ["y0", "y1"],
                "hidden_sizes": [5],
            },
        },
        "steps_per_execution": 1,
    }


def checkpoint_of(network: torch.nn.Module) -> dict:
    module = RegressionModule(network)
    state = {name: value.clone() for name, value in module.state_dict().items()}
    return {"hyper_parameters": dict(module.hparams), "state_dict": state}


@pytest.mark.parametrize("network", [LinearRegressor(4, 2), MLP(4, 2, hidden_sizes=[8, 3])])
def test_a_checkpoint_rebuilds_the_network_it_was_saved_from(network: torch.nn.Module) -> None:
    network.standardize.fit_(torch.randn(50, 4) * 3 + 1)
    rebuilt = network_from_checkpoint(checkpoint_of(network), "model.ckpt")
    assert type(rebuilt) is type(network)
    assert not rebuilt.training
    features = torch.randn(7, 4)
    torch.testing.assert_close(rebuilt(features), network(features))


def test_only_a_network_of_this_package_is_rebuilt_from_a_checkpoint() -> None:
    checkpoint = checkpoint_of(LinearRegressor(2, 1))
    checkpoint["hyper_parameters"]["net"]["target"] = "os.system"
    with pytest.raises(RunFolderError, match=r"model\.ckpt names an unknown network: os\.system"):
        network_from_checkpoint(checkpoint, "model.ckpt")
    checkpoint["hyper_parameters"]["net"]["target"] = "linreg.models.network.Standardize"
    with pytest.raises(RunFolderError, match="unknown network"):
        network_from_checkpoint(checkpoint, "model.ckpt")


def test_only_linear_networks_have_coefficients() -> None:
    assert LinearRegressor(3, 1).coefficients() is not None
    assert MLP(3, 1).coefficients() is None
    assert MLP(3, 1).kind == "mlp"


def test_the_mlp_stacks_a_linear_layer_and_a_relu_per_hidden_width() -> None:
    layers = [type(layer).__name__ for layer in MLP(3, 2, hidden_sizes=[8, 4]).layers]
    assert layers == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert MLP(3, 2, hidden_sizes=[8, 4])(torch.randn(5, 3)).shape == (5, 2)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_and_scheduler_builds_and_steps(optimizer: str, scheduler: str) -> None:
    cfg = compose_config([f"optimizer={optimizer}", f"scheduler={scheduler}"])
    network = LinearRegressor(3, 1)
    opt = instantiate(cfg.optimizer)(network.parameters())
    assert type(opt).__name__.lower() == optimizer
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr

    factory = instantiate(cfg.scheduler) if cfg.scheduler else None
    schedule = build_scheduler(factory, opt, lambda: 10) if factory else None

    before = network.linear.weight.detach().clone()
    features, targets = torch.randn(16, 3), torch.randn(16, 1)

    def closure() -> torch.Tensor:  # what Lightning passes; L-BFGS calls it several times
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(network(features), targets)
        loss.backward()
        return loss

    opt.step(closure)
    assert not torch.equal(before, network.linear.weight)

    if schedule is None:
        assert scheduler == "none"
        return
    for _ in range(cfg.scheduler.get("step_size", 5)):
        schedule.step(1.0) if scheduler == "plateau" else schedule.step()
    assert opt.param_groups[0]["lr"] < cfg.optimizer.lr


@pytest.mark.parametrize(
    ("features", "reference", "scale"), [(8, 8, 1.0), (32, 8, 0.5), (2, 8, 1.0), (32, None, 1.0)]
)
def test_the_lr_is_scaled_to_the_number_of_features_before_the_schedule_reads_it(
    features: int, reference: int | None, scale: float
) -> None:
    module = RegressionModule(
        LinearRegressor(features, 1),
        optimizer=partial(torch.optim.Adam, lr=0.03),
        scheduler=partial(WarmupCosine, warmup_fraction=0.0, final_lr_fraction=0.0),
        lr_reference_features=reference,
    )
    module.trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.execution.run_optimizer_steps = lambda trainer: 10  # the run's length, unfitted
    assert module.lr_scale == scale
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.03 * scale)
    assert schedule.base_lrs == [pytest.approx(0.03 * scale)]


def test_warmup_cosine_rises_over_its_warmup_then_anneals_to_its_floor_at_the_last_step() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = WarmupCosine(optimizer, total_steps=100, warmup_fraction=0.05, final_lr_fraction=0.1)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(100):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[:6] == pytest.approx([2 * k / 6 for k in range(1, 6)] + [2.0])
    assert rates[5:] == sorted(rates[5:], reverse=True)
    midway = 0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 47 / 95))  # 47 of 95 annealing steps
    assert rates[5 + 47] == pytest.approx(midway)
    assert rates[-1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"warmup_fraction=1.5 must be in \[0, 1\)"):
        WarmupCosine(optimizer, total_steps=10, warmup_fraction=1.5)


def test_evaluate_reports_the_stage_metrics_on_a_whole_split() -> None:
    network = LinearRegressor(2, 1)
    features = torch.randn(100, 2)
    targets = network(features).detach() + 0.5
    metrics = evaluate(
        network, [(features[:60], targets[:60]), (features[60:], targets[60:])], "val/"
    )
    assert metrics["val/mse"] == pytest.approx(0.25)
    assert metrics["val/loss"] == metrics["val/mse"]
    assert metrics["val/mae"] == pytest.approx(0.5)
    assert set(metrics) == {"val/mse", "val/mae", "val/r2", "val/explained_variance", "val/loss",
                            "val/loss_std_error"}  # fmt: skip
    assert metrics["val/loss_std_error"] == pytest.approx(0.0, abs=1e-6)  # every row 0.25


def test_the_loss_standard_error_is_the_spread_of_the_rows_losses_over_root_n() -> None:
    torch.manual_seed(0)
    network = LinearRegressor(3, 2)
    features = torch.randn(500, 3)
    targets = network(features).detach() + torch.randn(500, 2) * torch.tensor([0.5, 2.0])
    metrics = evaluate(network, [(features[:128], targets[:128]), (features[128:], targets[128:])],
                       "val/")  # fmt: skip
    row_losses = (network(features).detach() - targets).double().square().mean(1).numpy()
    assert metrics["val/loss"] == pytest.approx(row_losses.mean(), rel=1e-5)
    expected = row_losses.std(ddof=1) / len(row_losses) ** 0.5
    assert metrics["val/loss_std_error"] == pytest.approx(expected, rel=1e-9)


class _LearningRates(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def fit(
    steps_per_execution: int, scheduler: list[str]
) -> tuple[pl.Trainer, RegressionModule, list]:
    cfg = compose_config(
        ["data.n_samples=3000", "data.batch_size=64", "optimizer=adam",
         "data.min_batches_per_epoch=null", *scheduler,
         f"model.steps_per_execution={steps_per_execution}"]
    )  # fmt: skip
    torch.manual_seed(0)  # the same initial weights
    datamodule = instantiate(cfg.data)
    network = LinearRegressor(datamodule.n_features, datamodule.n_targets)
    network.fit_standardization(*datamodule.split("train"))
    module = RegressionModule(
        network,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.scheduler else None,
        steps_per_execution=steps_per_execution,
    )
    learning_rates = _LearningRates()
    trainer = pl.Trainer(
        max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[learning_rates],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return trainer, module, learning_rates.seen


@pytest.mark.parametrize(
    "scheduler",
    [
        ["scheduler=none"],
        ["scheduler=cosine"],  # stepped after every optimizer step
        ["scheduler=step", "scheduler.step_size=2"],
        # Cuts the rate after every epoch that does not cut val/loss tenfold.
        ["scheduler=plateau", "scheduler.patience=0", "scheduler.threshold=0.9"],
    ],
    ids=["none", "cosine", "step", "plateau"],
)
def test_several_steps_per_execution_train_exactly_like_one_step_per_lightning_step(
    scheduler: list[str],
) -> None:
    # 2100 training rows in batches of 64: 33 batches, so executions of 8 end with one of 1.
    automatic, automatic_module, automatic_lrs = fit(1, scheduler)
    fused, fused_module, fused_lrs = fit(8, scheduler)
    assert automatic.global_step == 5 * 33
    assert fused.global_step == 5 * 5  # Lightning counts executions
    assert fused_lrs == automatic_lrs
    assert len(set(fused_lrs)) > 1 or scheduler == ["scheduler=none"]
    for name, value in automatic_module.state_dict().items():
        torch.testing.assert_close(fused_module.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    for name in ("train/epoch_loss", "val/loss"):
        torch.testing.assert_close(
            fused.callback_metrics[name], automatic.callback_metrics[name], rtol=1e-5, atol=0
        )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_running_loss_sums_in_float32_under_low_precision(dtype: torch.dtype) -> None:
    # 1,500 executions of 16 batches of 1024 rows, as a long bf16-mixed epoch: a bf16 sum stalls
    # far below the truth, an fp16 one overflows to inf.
    running = RunningLoss()
    losses = torch.full((16,), 16.0, dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(1_500):
            running.add(losses, [1024] * 16)
        running.add(losses[:2], [1024, 7])  # the last, shorter batch of a split
    mean = running.epoch_mean()
    assert mean.dtype == torch.float32
    assert float(mean) == 16.0


def test_running_loss_weights_batches_by_their_rows_without_copies_to_the_device() -> None:
    running = RunningLoss()
    running.add(torch.tensor([1.0, 5.0]), [3, 1])
    running.add(torch.tensor([2.0]), [4])
    assert float(running.window_mean()) == pytest.approx(2.0)
    assert float(running.epoch_mean()) == pytest.approx(2.0)
    meta = RunningLoss()  # on a device with no values: only device-side arithmetic works there
    meta.add(torch.empty(16, device="meta"), [1024] * 16)
    meta.add(torch.empty(2, device="meta"), [1024, 7])
    assert meta.epoch_mean().device == torch.device("meta")


def test_a_linear_network_through_the_origin_maps_zero_to_zero_however_far_its_data_lie() -> None:
    from linreg.models.network import network_from_spec

    generator = torch.Generator().manual_seed(0)
    features = 100 + 5 * torch.randn(500, 3, generator=generator)  # far from 0: centring would
    targets = features @ torch.tensor([[2.0], [-1.0], [0.5]]) + 40  # put an intercept back
    network = LinearRegressor(3, 1, intercept=False)
    network.fit_standardization(features, targets)
    assert "linear.bias" not in network.state_dict()
    assert network.standardize.mean.abs().max() == 0 == network.target_standardize.mean.abs().max()
    with torch.no_grad():
        network.linear.weight.normal_(generator=generator)
    network.train()
    assert network(torch.zeros(2, 3)).abs().max() == 0  # the fold used in training
    network.eval()
    assert network(torch.zeros(2, 3)).abs().max() == 0
    assert network.coefficients()[1].tolist() == [0.0]
    rebuilt = network_from_spec(network.spec(), "a checkpoint")
    assert not rebuilt.intercept and rebuilt.linear.bias is None
