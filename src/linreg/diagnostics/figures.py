"""Pictures of a fit, as matplotlib figures for TensorBoard's Images tab."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only, never a window

import numpy as np
from matplotlib.figure import Figure


def predicted_vs_true(predicted: np.ndarray, true: np.ndarray, split: str) -> Figure:
    """One scatter per target against the identity line: a perfect model sits on the diagonal."""
    n_targets = true.shape[1]
    figure = Figure(figsize=(4 * n_targets, 4), layout="constrained")
    for target, axes in enumerate(np.atleast_1d(figure.subplots(1, n_targets))):
        axes.scatter(true[:, target], predicted[:, target], s=4, alpha=0.4)
        low, high = float(true[:, target].min()), float(true[:, target].max())
        axes.plot([low, high], [low, high], color="black", linewidth=1)
        axes.set(xlabel="true", ylabel="predicted", title=f"target {target} ({split} split)")
    return figure


def residual_histogram(residuals: np.ndarray, noise_std: float | None, split: str) -> Figure:
    """Residuals of a good fit look like the noise: centred on 0 with the noise's spread (drawn
    where the data's noise is known)."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    axes = figure.subplots()
    axes.hist(residuals.ravel(), bins=60, density=True, alpha=0.7, label="residuals")
    if noise_std:
        grid = np.linspace(residuals.min(), residuals.max(), 200)
        density = np.exp(-0.5 * (grid / noise_std) ** 2) / (noise_std * np.sqrt(2 * np.pi))
        axes.plot(grid, density, color="black", label=f"noise N(0, {noise_std:g}²)")
    axes.set(xlabel="predicted - true", ylabel="density", title=f"residuals ({split} split)")
    axes.legend()
    return figure


def weights_vs_truth(learned: np.ndarray, truth: np.ndarray) -> Figure:
    """Learned raw-feature weights next to the ground truth, one panel per target."""
    n_targets, n_features = truth.shape
    figure = Figure(figsize=(max(5, 0.5 * n_features + 2), 3 * n_targets), layout="constrained")
    positions = np.arange(n_features)
    for target, axes in enumerate(np.atleast_1d(figure.subplots(n_targets, 1))):
        axes.bar(positions - 0.2, truth[target], width=0.4, label="ground truth")
        axes.bar(positions + 0.2, learned[target], width=0.4, label="learned")
        axes.set(xlabel="feature", ylabel="weight", title=f"target {target}")
        axes.legend()
    return figure


def coefficients_figure(coefficients: dict[str, dict[str, dict]], limit: int = 30) -> Figure:
    """Trained against least-squares coefficients (raw units, ± 2 standard errors where known),
    one panel per target, the `limit` largest effects (the table's order)."""
    n_targets = len(coefficients)
    figure = Figure(figsize=(7, 0.3 * limit + 1.5 if n_targets == 1 else 4 * n_targets))
    figure.set_layout_engine("constrained")
    for axes, (target, rows) in zip(
        np.atleast_1d(figure.subplots(n_targets, 1)), coefficients.items(), strict=True
    ):
        names = [name for name in rows if name != "(intercept)"][:limit]
        positions = np.arange(len(names))
        exact = np.array([rows[name]["least_squares"] for name in names])
        errors = [rows[name]["std_error"] for name in names]
        axes.barh(positions + 0.2, exact, height=0.4, label="least squares",
                  xerr=None if None in errors else 2 * np.array(errors))  # fmt: skip
        axes.barh(positions - 0.2, [rows[name]["trained"] for name in names], height=0.4,
                  label="trained")  # fmt: skip
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        shown = f"{len(names)} largest of {len(rows) - 1}" if len(rows) - 1 > limit else "all"
        axes.set(xlabel="coefficient (raw units)", title=f"{target}: {shown} coefficients")
        axes.legend()
    return figure
