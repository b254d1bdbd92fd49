"""Does every optimizer reach least squares on the data users bring, and how fast against the tools
they would pick instead? `python -m linreg.bench --convergence` (see linreg.bench).

The matrix trains every optimizer option with its shipped settings and no flag changes on data
shapes that differ from the default (20,000 rows x 8 features) in one respect each, with the
default epochs and with `trainer.max_epochs=5`: each cell is the test MSE's gap to the exact
least-squares fit on the same training rows, and the fit stage's seconds. The comparison trains
scikit-learn's `StandardScaler + SGDRegressor` and `LinearRegression` on the very rows a default
`python train.py data.n_samples=N data.n_features=P` trains on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from linreg.trial import optimizer_options, train_run

# One respect at a time in which users' data differ from the default.
SHAPES: dict[str, tuple[str, ...]] = {
    "default: 20,000 rows x 8": (),
    "500 rows": ("data.n_samples=500",),
    "4,000 rows": ("data.n_samples=4000",),
    "1e6 rows": ("data.n_samples=1000000",),
    "1 feature": ("data.n_features=1",),
    "256 features": ("data.n_features=256",),
    "256 features, 500 rows": ("data.n_features=256", "data.n_samples=500"),
    "target scale 1e-3": ("data.target_scale=1e-3",),
    "target scale 1e4": ("data.target_scale=1e4",),
    "correlation 0.99": ("data.feature_correlation=0.99",),
}
EPOCHS: tuple[int | None, ...] = (None, 5)  # None: the default (trainer.max_epochs)
BOUND = 0.01  # the gap every cell should stay within


@dataclass(frozen=True)
class Cell:
    shape: str
    epochs: int | None
    optimizer: str
    gap: float  # test MSE / least squares' test MSE - 1
    fit_seconds: float
    epochs_run: int


def cells(
    shapes: Sequence[str],
    epochs: Sequence[int | None],
    optimizers: Sequence[str],
    device: str,
    checkout: Path,
) -> Iterator[Cell]:
    """One `python train.py` per cell, as a user would run it (no export: it is not timed)."""
    for shape in shapes:
        for max_epochs in epochs:
            for optimizer in optimizers:
                overrides = [f"optimizer={optimizer}", *SHAPES[shape], "logger=none",
                             "export.enabled=false"]  # fmt: skip
                if max_epochs is not None:
                    overrides.append(f"trainer.max_epochs={max_epochs}")
                _, _, _, summary = train_run(overrides, device, checkout)
                yield Cell(
                    shape, max_epochs, optimizer, summary["test_mse_gap_to_reference"],
                    summary["stage_times_s"]["fit"], summary["epochs"],
                )  # fmt: skip


def matrix(device: str, checkout: Path) -> str:
    optimizers = optimizer_options(checkout)
    lines = [
        "Every optimizer option with its shipped settings (`python train.py optimizer=<name>` "
        "plus the data change of the row): test MSE gap to least squares, fit seconds, epochs run",
        "",
        "| data | epochs | " + " | ".join(optimizers) + " |",
        "|---|---|" + "---|" * len(optimizers),
    ]
    row: list[Cell] = []
    outside: list[Cell] = []
    for cell in cells(list(SHAPES), EPOCHS, optimizers, device, checkout):
        row.append(cell)
        outside += [cell] if abs(cell.gap) > BOUND else []
        if len(row) == len(optimizers):
            label = "default" if cell.epochs is None else str(cell.epochs)
            lines.append(
                f"| {cell.shape} | {label} | "
                + " | ".join(f"{c.gap:+.2%} ({c.fit_seconds:.1f} s, {c.epochs_run})" for c in row)
                + " |"
            )
            print(lines[-1], flush=True)
            row = []
    worst = max(abs(c.gap) for c in outside) if outside else 0.0
    lines += [
        "",
        f"Cells outside +-{BOUND:.0%}: {len(outside)}"
        + (f" (the worst {worst:+.2%}): " if outside else "")
        + ", ".join(f"{c.optimizer} on {c.shape}, epochs {c.epochs or 'default'}" for c in outside),
    ]
    return "\n".join(lines) + "\n"


def against_scikit_learn(rows: int, features: int, device: str, checkout: Path) -> str:
    """linreg's defaults against `StandardScaler + SGDRegressor` and `LinearRegression` on the
    same training rows, each scored on the same test rows against the same least-squares fit."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return "scikit-learn is not installed: make setup-bench (or pip install -e '.[bench]')\n"
    data = (f"data.n_samples={rows}", f"data.n_features={features}")
    _, _, config, summary = train_run([*data, "logger=none"], device, checkout)
    (x_train, y_train), (x_test, y_test), reference = _same_rows(config)
    lines = [
        f"Time to accuracy on {rows:,} rows x {features} features (train split "
        f"{len(x_train):,} rows), one machine, one run each:",
        "",
        "| tool | fit (s) | test MSE gap to least squares | stopped |",
        "|---|---|---|---|",
        f"| linreg, `python train.py` defaults | {summary['stage_times_s']['fit']:.2f} | "
        f"{summary['test_mse_gap_to_reference']:+.3%} | {summary['stopping']} |",
    ]
    for name, seconds, mse, note in _scikit_learn_fits(x_train, y_train, x_test, y_test):
        lines.append(f"| {name} | {seconds:.2f} | {mse / reference - 1:+.3%} | {note} |")
    return "\n".join(lines) + "\n"


def _same_rows(config: object) -> tuple[tuple, tuple, float]:
    """The run's train and test splits as NumPy, and least squares' test MSE on them."""
    from linreg.diagnostics.reference import reference_mse
    from linreg.run.build import construct

    datamodule = construct(config.data, streaming=False)
    datamodule.setup()
    train, test = datamodule.split("train"), datamodule.split("test")
    reference = reference_mse([train], [test])
    as_numpy = [(x.numpy(), y.numpy().ravel()) for x, y in (train, test)]
    return as_numpy[0], as_numpy[1], reference


def _scikit_learn_fits(
    x_train: object, y_train: object, x_test: object, y_test: object
) -> Iterator[tuple[str, float, float, str]]:
    import numpy as np
    from sklearn.linear_model import LinearRegression, SGDRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    models = {
        "scikit-learn `StandardScaler + SGDRegressor` (defaults)": make_pipeline(
            StandardScaler(), SGDRegressor(random_state=0)
        ),
        "scikit-learn `LinearRegression` (exact)": LinearRegression(),
    }
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(x_train, y_train)
        seconds = time.perf_counter() - start
        mse = float(np.mean((model.predict(x_test) - y_test) ** 2))
        iterations = getattr(model[-1], "n_iter_", None) if hasattr(model, "steps") else None
        note = f"after {iterations} epochs (its tol)" if iterations else "closed form"
        yield name, seconds, mse, note
