"""Pictures of a fit, as matplotlib figures for TensorBoard's Images tab."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only, never a window

import math

import numpy as np
from matplotlib.figure import Figure

# Sizes stay readable whatever the data: at most this many panels (targets) per figure, in rows
# of PANELS_PER_ROW, and a scatter instead of bars beyond MAX_BARS features.
MAX_PANELS = 8
PANELS_PER_ROW = 4
MAX_BARS = 40


def _panels(figure: Figure, n_panels: int) -> list:
    """A grid of at most MAX_PANELS axes, PANELS_PER_ROW to a row; those unused are hidden."""
    shown = min(n_panels, MAX_PANELS)
    columns = min(shown, PANELS_PER_ROW)
    grid = np.atleast_1d(figure.subplots(math.ceil(shown / columns), columns)).ravel()
    for axes in grid[shown:]:
        axes.set_visible(False)
    return list(grid[:shown])


def _panel_size(n_panels: int, width: float, height: float) -> tuple[float, float]:
    shown = min(n_panels, MAX_PANELS)
    columns = min(shown, PANELS_PER_ROW)
    return width * columns, height * math.ceil(shown / columns)


def _say_which_targets(figure: Figure, n_targets: int) -> None:
    if n_targets > MAX_PANELS:
        figure.suptitle(f"the first {MAX_PANELS} of {n_targets} targets")


def predicted_vs_true(predicted: np.ndarray, true: np.ndarray, rows: str) -> Figure:
    """One scatter per target against the identity line: a perfect model sits on the diagonal."""
    n_targets = true.shape[1]
    figure = Figure(figsize=_panel_size(n_targets, 4, 4), layout="constrained")
    for target, axes in enumerate(_panels(figure, n_targets)):
        axes.scatter(true[:, target], predicted[:, target], s=4, alpha=0.4)
        low, high = float(true[:, target].min()), float(true[:, target].max())
        axes.plot([low, high], [low, high], color="black", linewidth=1)
        axes.set(xlabel="true", ylabel="predicted", title=f"target {target} ({rows})")
    _say_which_targets(figure, n_targets)
    return figure


def residual_histogram(residuals: np.ndarray, noise_std: float | None, rows: str) -> Figure:
    """Residuals of a good fit look like the noise: centred on 0 with the noise's spread (drawn
    where the data's noise is known)."""
    figure = Figure(figsize=(5, 4), layout="constrained")
    axes = figure.subplots()
    axes.hist(residuals.ravel(), bins=60, density=True, alpha=0.7, label="residuals")
    if noise_std:
        grid = np.linspace(residuals.min(), residuals.max(), 200)
        density = np.exp(-0.5 * (grid / noise_std) ** 2) / (noise_std * np.sqrt(2 * np.pi))
        axes.plot(grid, density, color="black", label=f"noise N(0, {noise_std:g}²)")
    axes.set(xlabel="predicted - true", ylabel="density", title=f"residuals ({rows})")
    axes.legend()
    return figure


def weights_vs_truth(learned: np.ndarray, truth: np.ndarray) -> Figure:
    """Learned raw-feature weights against the ground truth, one panel per target: bars side by
    side for a few features, a scatter against the diagonal (one point per feature) for many."""
    n_targets, n_features = truth.shape
    bars = n_features <= MAX_BARS
    width = max(5, 0.12 * n_features + 2) if bars else 4
    figure = Figure(figsize=_panel_size(n_targets, width, 3 if bars else 4), layout="constrained")
    positions = np.arange(n_features)
    for target, axes in enumerate(_panels(figure, n_targets)):
        if bars:
            axes.bar(positions - 0.2, truth[target], width=0.4, label="ground truth")
            axes.bar(positions + 0.2, learned[target], width=0.4, label="learned")
            axes.set(xlabel="feature", ylabel="weight", title=f"target {target}")
            axes.legend()
        else:
            axes.scatter(truth[target], learned[target], s=6, alpha=0.5)
            low, high = float(truth[target].min()), float(truth[target].max())
            axes.plot([low, high], [low, high], color="black", linewidth=1)
            axes.set(xlabel="ground-truth weight", ylabel="learned weight",
                     title=f"target {target}: {n_features} features")  # fmt: skip
    _say_which_targets(figure, n_targets)
    return figure


def coefficients_figure(
    coefficients: dict[str, dict[str, dict]],
    feature_sd: dict[str, float],
    target_sd: dict[str, float],
    limit: int = 20,
) -> Figure:
    """Standardised effects, comparable whatever the features' units: each feature's least-squares
    coefficient x its training standard deviation / the target's (how many of the target's
    standard deviations one of the feature's moves it), with its 95 % interval, and the trained
    model's beside it; one panel per target, the `limit` largest (the intercept, which has no
    such scale, is in the summary's table)."""
    n_targets = len(coefficients)
    shown = list(coefficients.items())[:MAX_PANELS]
    counts = [min(limit, len(rows)) for _, rows in shown]
    figure = Figure(figsize=(8, sum(0.32 * count + 1.6 for count in counts)))
    figure.set_layout_engine("constrained")
    for axes, (target, rows) in zip(
        np.atleast_1d(figure.subplots(len(shown), 1)), shown, strict=True
    ):
        features = [name for name in rows if name != "(intercept)"]
        names = features[:limit]
        scale = np.array([feature_sd[name] / target_sd[target] for name in names])
        positions = np.arange(len(names))
        exact = scale * np.array([rows[name]["least_squares"] for name in names])
        trained = scale * np.array([rows[name]["trained"] for name in names])
        if all(rows[name]["ci_low"] is not None for name in names):
            low = scale * np.array([rows[name]["ci_low"] for name in names])
            high = scale * np.array([rows[name]["ci_high"] for name in names])
            axes.errorbar(exact, positions, xerr=[exact - low, high - exact], fmt="o",
                          capsize=3, label="least squares, with its 95 % interval")  # fmt: skip
        else:
            axes.plot(exact, positions, "o", label="least squares (no interval: too few rows)")
        axes.plot(trained, positions, "x", markersize=8, label="trained model")
        axes.axvline(0, color="0.5", linewidth=0.8)
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        which = f"the {len(names)} largest of {len(features)}" if len(features) > limit else "all"
        axes.set(xlabel=f"standard deviations of {target} per standard deviation of the feature",
                 title=f"{target}: standardised effects, {which} features")  # fmt: skip
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16 - 0.4 / (len(names) + 2)),
                    ncols=2, frameon=False)  # fmt: skip
    _say_which_targets(figure, n_targets)
    return figure
