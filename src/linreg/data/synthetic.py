"""Synthetic regression data with a known answer: y = target_scale * (X w* + b* + noise_std * eps).

The rows are i.i.d., so contiguous train/val/test slices are disjoint random samples. In memory,
every row is drawn once from `seed`; streamed, batch i of a split is drawn from (seed, split, i)
when it is asked for, so 100 million rows train in the memory of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from linreg.batches import Batch, to_device
from linreg.config.validation import split_sizes, too_large_message
from linreg.data.loaders import EpochShuffler, StreamingLoader, derived_seed
from linreg.data.module import RegressionDataModule
from linreg.data.source import SPLITS, GroundTruth, RegressionSource
from linreg.errors import ConfigError


@dataclass(frozen=True)
class FeatureDesign:
    """How raw features are drawn: offset + scale * N(0, C), where C has 1 on its diagonal and
    `correlation` everywhere else (equicorrelated: the larger, the worse conditioned the design)."""

    scale: float = 1.0
    offset: float = 0.0
    correlation: float = 0.0

    def draw(self, generator: torch.Generator, n_rows: int, n_features: int) -> torch.Tensor:
        normal = torch.randn(n_rows, n_features, generator=generator)
        if self.correlation:  # a factor shared by a row's features; none drawn when 0
            shared = torch.randn(n_rows, 1, generator=generator)
            normal = (1 - self.correlation) ** 0.5 * normal + self.correlation**0.5 * shared
        return self.offset + self.scale * normal


def make_regression(
    n_samples: int,
    n_features: int,
    n_targets: int,
    noise_std: float,
    design: FeatureDesign,
    seed: int,
    target_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, GroundTruth]:
    """Draw the ground truth, then the features and noisy targets, all from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    truth = draw_ground_truth(generator, n_features, n_targets, noise_std, target_scale)
    features, targets = draw_rows(generator, n_samples, truth, design)
    return features, targets, truth


def draw_ground_truth(
    generator: torch.Generator,
    n_features: int,
    n_targets: int,
    noise_std: float,
    target_scale: float = 1.0,
) -> GroundTruth:
    """w*, b* ~ N(0, 1) and the noise, all times `target_scale`: the same problem in other units."""
    weight = torch.randn(n_targets, n_features, generator=generator)
    bias = torch.randn(n_targets, generator=generator)
    return GroundTruth(target_scale * weight, target_scale * bias, target_scale * noise_std)


def draw_rows(
    generator: torch.Generator, n_rows: int, truth: GroundTruth, design: FeatureDesign
) -> Batch:
    """Rows of raw features and their noisy targets, drawn on the CPU."""
    n_targets, n_features = truth.weight.shape
    features = design.draw(generator, n_rows, n_features)
    noise = truth.noise_std * torch.randn(n_rows, n_targets, generator=generator)
    return features, features @ truth.weight.T + truth.bias + noise


@dataclass(frozen=True)
class SyntheticStream:
    """One split drawn batch by batch: batch i comes from (seed, split, i), the same every time."""

    name: str
    n_rows: int
    batch_size: int
    seed: int
    truth: GroundTruth
    design: FeatureDesign

    @property
    def n_batches(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def batch(self, index: int, device: torch.device) -> Batch:
        """Batch `index`, moved to `device`. It is always drawn on the CPU: a GPU's generator gives
        other numbers for the same seed, and the reference, the objective and `eval.py` read the
        same batches on the CPU."""
        if not 0 <= index < self.n_batches:
            raise IndexError(f"{self.name} split has {self.n_batches} batches, not {index + 1}")
        rows = min(self.batch_size, self.n_rows - index * self.batch_size)
        generator = torch.Generator().manual_seed(
            derived_seed(self.seed, SPLITS.index(self.name), index)
        )
        features, targets = draw_rows(generator, rows, self.truth, self.design)
        return to_device(features, device), to_device(targets, device)

    def loader(
        self, shuffle_seed: int | None, device: torch.device, rank: int = 0, world_size: int = 1
    ) -> StreamingLoader:
        """Batches in a per-epoch shuffled order of batch indices (rows within a batch are
        i.i.d. already), or in index order."""
        sampler = EpochShuffler(self.n_batches, shuffle_seed) if shuffle_seed is not None else None
        return StreamingLoader(self, sampler, device, rank, world_size)


class SyntheticSource(RegressionSource):
    """Rows drawn from `seed` with a ground truth drawn first from the same generator."""

    def __init__(
        self,
        n_samples: int,
        n_features: int,
        n_targets: int,
        noise_std: float,
        design: FeatureDesign,
        fractions: tuple[float, float, float],
        seed: int,
        target_scale: float = 1.0,
    ) -> None:
        self.n_samples = n_samples
        self.n_features = n_features
        self.n_targets = n_targets
        self.noise_std = noise_std
        self.design = design
        self.target_scale = target_scale
        self.sizes = split_sizes(n_samples, fractions)
        self.seed = seed

    @cached_property
    def ground_truth(self) -> GroundTruth:
        # The generator's first draws, exactly as make_regression takes them.
        generator = torch.Generator().manual_seed(self.seed)
        return draw_ground_truth(
            generator, self.n_features, self.n_targets, self.noise_std, self.target_scale
        )

    def load(self) -> dict[str, Batch]:
        try:
            features, targets, _ = make_regression(
                self.n_samples,
                self.n_features,
                self.n_targets,
                self.noise_std,
                self.design,
                self.seed,
                self.target_scale,
            )
        except (RuntimeError, MemoryError) as err:  # torch's "can't allocate memory"
            if "allocate" not in str(err) and not isinstance(err, MemoryError):
                raise
            message = too_large_message(self.n_samples, self.n_features, self.n_targets)
            raise ConfigError(f"data.n_samples={self.n_samples} {message}") from err
        bounds = torch.tensor((0, *self.sizes)).cumsum(0).tolist()
        return {
            name: (features[start:stop], targets[start:stop])
            for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:], strict=True)
        }

    def stream(self, batch_size: int) -> dict[str, SyntheticStream]:
        return {
            name: SyntheticStream(
                name, n_rows, batch_size, self.seed, self.ground_truth, self.design
            )
            for name, n_rows in zip(SPLITS, self.sizes, strict=True)
        }


class SyntheticRegressionDataModule(RegressionDataModule):
    """The DataModule over a SyntheticSource, built from the flat `data.*` keys of
    `conf/data/synthetic.yaml` (saved as its hyper-parameters)."""

    def __init__(
        self,
        *,
        n_samples: int,
        n_features: int,
        n_targets: int,
        noise_std: float,
        feature_scale: float,
        feature_offset: float,
        train_fraction: float,
        val_fraction: float,
        test_fraction: float,
        seed: int,
        feature_correlation: float = 0.0,
        target_scale: float = 1.0,
        **serving: Any,
    ) -> None:
        """`serving`: how RegressionDataModule serves the rows (batch_size, shuffle, streaming,
        steps_per_execution)."""
        source = SyntheticSource(
            n_samples, n_features, n_targets, noise_std,
            FeatureDesign(feature_scale, feature_offset, feature_correlation),
            (train_fraction, val_fraction, test_fraction), seed, target_scale,
        )  # fmt: skip
        super().__init__(source, seed=seed, **serving)
        self.save_hyperparameters()
