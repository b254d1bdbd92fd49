"""Synthetic regression data with a known answer, served as whole batches.

The rows are i.i.d., so contiguous train/val/test slices are disjoint random samples. Batches are
tensor slices of one per-epoch permutation of the split: no per-sample `__getitem__`, no collate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch import Tensor

from linreg.config import split_sizes

Batch = tuple[Tensor, Tensor]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GroundTruth:
    """The parameters that generated the data: y = x @ weight.T + bias + noise."""

    weight: Tensor  # (n_targets, n_features)
    bias: Tensor  # (n_targets,)


def make_regression(
    n_samples: int,
    n_features: int,
    n_targets: int,
    noise_std: float,
    feature_scale: float,
    feature_offset: float,
    seed: int,
) -> tuple[Tensor, Tensor, GroundTruth]:
    """Draw the ground truth, then the features and noisy targets, all from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n_targets, n_features, generator=generator)
    bias = torch.randn(n_targets, generator=generator)
    features = feature_offset + feature_scale * torch.randn(
        n_samples, n_features, generator=generator
    )
    noise = noise_std * torch.randn(n_samples, n_targets, generator=generator)
    targets = features @ weight.T + bias + noise
    return features, targets, GroundTruth(weight, bias)


class EpochShuffler:
    """The sample order of one epoch, a function of (seed, epoch) only, so a resumed run replays it.

    Lightning calls `set_epoch` on a loader's `sampler` before every epoch, as for a DataLoader.
    """

    def __init__(self, n_rows: int, seed: int) -> None:
        self.n_rows = n_rows
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, device: torch.device) -> Tensor:
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch)))
        return torch.randperm(self.n_rows, generator=generator).to(device)


class WholeBatchLoader:
    """Yields (features, targets) batches as views; shuffles by permuting the split once per epoch.

    Under distributed training each of `world_size` processes takes every `world_size`-th row of
    each global batch (`batch_size` rows per process), so every row is seen exactly once per epoch
    and all processes get the same number of batches, as DDP requires. `sampler` and
    `batch_sampler` are the attributes Lightning inspects on a DataLoader.
    """

    batch_sampler = None

    def __init__(
        self,
        features: Tensor,
        targets: Tensor,
        batch_size: int,
        sampler: EpochShuffler | None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.features = features
        self.targets = targets
        self.batch_size = batch_size
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self._shuffled: tuple[Tensor, Tensor] | None = None

    def _bounds(self) -> list[int]:
        """Global batch boundaries; a last global batch too small to give every process a row is
        merged into the one before."""
        n_rows = len(self.features)
        starts = list(range(0, n_rows, self.batch_size * self.world_size))
        if len(starts) > 1 and n_rows - starts[-1] < self.world_size:
            starts.pop()
        return [*starts, n_rows]

    def __len__(self) -> int:
        return len(self._bounds()) - 1

    def __iter__(self) -> Iterator[Batch]:
        features, targets = self.features, self.targets
        if self.sampler is not None:
            # Gathered into buffers allocated once: a fresh 2x-split allocation every epoch costs
            # more in page faults than the gather itself. Batches of an epoch are views of them.
            if self._shuffled is None:
                self._shuffled = (torch.empty_like(features), torch.empty_like(targets))
            order = self.sampler.permutation(features.device)
            features = torch.index_select(self.features, 0, order, out=self._shuffled[0])
            targets = torch.index_select(self.targets, 0, order, out=self._shuffled[1])
        step = self.world_size
        for start, stop in itertools.pairwise(self._bounds()):
            yield (
                features[start + self.rank : stop : step],
                targets[start + self.rank : stop : step],
            )


class SyntheticRegressionDataModule(pl.LightningDataModule):
    """y = X w* + b* + noise_std * eps, split into train/val/test, with the ground truth exposed."""

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
        batch_size: int,
        seed: int,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.splits: dict[str, Batch] = {}
        self.ground_truth: GroundTruth | None = None

    def setup(self, stage: str | None = None) -> None:
        """Generate the data once; later calls (one per trainer stage) reuse it."""
        if self.splits:
            return
        hp = self.hparams
        features, targets, self.ground_truth = make_regression(
            hp.n_samples,
            hp.n_features,
            hp.n_targets,
            hp.noise_std,
            hp.feature_scale,
            hp.feature_offset,
            hp.seed,
        )
        sizes = split_sizes(hp.n_samples, (hp.train_fraction, hp.val_fraction, hp.test_fraction))
        bounds = torch.tensor((0, *sizes)).cumsum(0).tolist()
        for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
            self.splits[name] = (features[start:stop], targets[start:stop])

    def split(self, name: str) -> Batch:
        """The (features, targets) of one split, on the CPU."""
        self.setup()
        return self.splits[name]

    def _loader(self, name: str, shuffle: bool) -> WholeBatchLoader:
        # Moved to the training device here, once per fit/test, never per batch.
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        features, targets = (t.to(device) for t in self.split(name))
        sampler = EpochShuffler(len(features), self.seed) if shuffle else None
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return WholeBatchLoader(features, targets, self.batch_size, sampler, rank, world_size)

    def train_dataloader(self) -> WholeBatchLoader:
        return self._loader("train", shuffle=self.shuffle)

    def val_dataloader(self) -> WholeBatchLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> WholeBatchLoader:
        return self._loader("test", shuffle=False)
