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
