"""Synthetic regression data with a known answer, served as whole batches.

The rows are i.i.d., so contiguous train/val/test slices are disjoint random samples. Batches are
tensor slices of one per-epoch permutation of the split: no per-sample `__getitem__`, no collate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor

from linreg.config import split_sizes, too_large_message
from linreg.errors import ConfigError

Batch = tuple[Tensor, Tensor]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GroundTruth:
    """The parameters that generated the data: y = x @ weight.T + bias + noise."""

    weight: Tensor  # (n_targets, n_features)
    bias: Tensor  # (n_targets,)


def derived_seed(*parts: int) -> int:
    """A seed that depends on all of `parts` and is the same in every process and Python version
    (unlike `hash`, which is salted per process for strings)."""
    return int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0] >> 1)


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
    truth = draw_ground_truth(generator, n_features, n_targets)
    features, targets = draw_rows(
        generator, n_samples, truth, noise_std, feature_scale, feature_offset
    )
    return features, targets, truth


def draw_ground_truth(generator: torch.Generator, n_features: int, n_targets: int) -> GroundTruth:
    weight = torch.randn(n_targets, n_features, generator=generator)
    return GroundTruth(weight, torch.randn(n_targets, generator=generator))


def draw_rows(
    generator: torch.Generator,
    n_rows: int,
    truth: GroundTruth,
    noise_std: float,
    feature_scale: float,
    feature_offset: float,
) -> Batch:
    """Rows of raw features and their noisy targets, drawn on the CPU."""
    n_targets, n_features = truth.weight.shape
    features = feature_offset + feature_scale * torch.randn(n_rows, n_features, generator=generator)
    noise = noise_std * torch.randn(n_rows, n_targets, generator=generator)
    return features, features @ truth.weight.T + truth.bias + noise


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """`tensor` on `device`; to a GPU through pinned memory, so the copy does not wait for the GPU's
    queue to drain (a copy from pageable memory does)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class StreamedSplit:
    """A split that is never held in memory: batch i is drawn from (seed, split, i) when asked for,
    the same every time, so 100 million rows train in the memory of one batch."""

    name: str
    n_rows: int
    batch_size: int
    seed: int
    truth: GroundTruth
    noise_std: float
    feature_scale: float
    feature_offset: float

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
        features, targets = draw_rows(
            generator, rows, self.truth, self.noise_std, self.feature_scale, self.feature_offset
        )
        return to_device(features, device), to_device(targets, device)


class StreamingLoader:
    """Batches of a StreamedSplit in a per-epoch shuffled order of batch indices (rows inside a
    batch are i.i.d. already). Under DDP each process takes every world_size-th batch, and the last
    few batches that cannot be shared out evenly are skipped that epoch."""

    batch_sampler = None

    def __init__(
        self,
        split: StreamedSplit,
        sampler: EpochShuffler | None,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.split = split
        self.sampler = sampler
        self.device = device
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return self.split.n_batches // self.world_size

    def __iter__(self) -> Iterator[Batch]:
        if self.sampler is None:
            order = torch.arange(self.split.n_batches)
        else:
            order = self.sampler.permutation(torch.device("cpu"))
        mine = order[self.rank :: self.world_size][: len(self)]
        for index in mine.tolist():
            yield self.split.batch(index, self.device)


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
        """Drawn on the CPU, so the order is the same on every device."""
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        return to_device(torch.randperm(self.n_rows, generator=generator), device)


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


class Executions:
    """A loader's batches in lists of `steps_per_execution` (the last list may be shorter): what
    a module that takes several optimizer steps per Lightning step trains on."""

    batch_sampler = None

    def __init__(
        self, loader: WholeBatchLoader | StreamingLoader, steps_per_execution: int
    ) -> None:
        self.loader = loader
        self.sampler = loader.sampler  # Lightning sets the epoch on it: the shuffle is the loader's
        self.steps_per_execution = steps_per_execution

    def __len__(self) -> int:
        return -(-len(self.loader) // self.steps_per_execution)

    def __iter__(self) -> Iterator[list[Batch]]:
        batches = iter(self.loader)
        while group := list(itertools.islice(batches, self.steps_per_execution)):
            yield group


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
        streaming: bool = False,
        steps_per_execution: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.steps_per_execution = steps_per_execution
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.streaming = streaming
        self.seed = seed
        self.splits: dict[str, Batch] = {}
        self.streams: dict[str, StreamedSplit] = {}
        self.ground_truth: GroundTruth | None = None

    def setup(self, stage: str | None = None) -> None:
        """Generate the data once (or, streaming, only its ground truth); later calls reuse it."""
        if self.splits or self.streams:
            return
        hp = self.hparams
        sizes = split_sizes(hp.n_samples, (hp.train_fraction, hp.val_fraction, hp.test_fraction))
        if self.streaming:
            generator = torch.Generator().manual_seed(hp.seed)
            self.ground_truth = draw_ground_truth(generator, hp.n_features, hp.n_targets)
            for name, n_rows in zip(SPLITS, sizes, strict=True):
                self.streams[name] = StreamedSplit(
                    name, n_rows, hp.batch_size, hp.seed, self.ground_truth, hp.noise_std,
                    hp.feature_scale, hp.feature_offset,
                )  # fmt: skip
            return
        try:
            features, targets, self.ground_truth = make_regression(
                hp.n_samples,
                hp.n_features,
                hp.n_targets,
                hp.noise_std,
                hp.feature_scale,
                hp.feature_offset,
                hp.seed,
            )
        except (RuntimeError, MemoryError) as err:  # torch's "can't allocate memory"
            if "allocate" not in str(err) and not isinstance(err, MemoryError):
                raise
            message = too_large_message(OmegaConf.create(dict(hp)))
            raise ConfigError(f"data.n_samples={hp.n_samples} {message}") from err
        bounds = torch.tensor((0, *sizes)).cumsum(0).tolist()
        for name, start, stop in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
            self.splits[name] = (features[start:stop], targets[start:stop])

    def split(self, name: str) -> Batch:
        """The (features, targets) of one in-memory split, on the CPU."""
        self.setup()
        if self.streaming:
            raise RuntimeError("a streamed split is never held whole: use batches() or sample()")
        return self.splits[name]

    def batches(self, name: str) -> Iterator[Batch]:
        """The whole split, on the CPU, in pieces that fit in memory (one piece when in memory)."""
        self.setup()
        if not self.streaming:
            yield self.splits[name]
            return
        stream = self.streams[name]
        for index in range(stream.n_batches):
            yield stream.batch(index, torch.device("cpu"))

    def sample(self, name: str, n_rows: int) -> Batch:
        """The first `n_rows` rows (at most) of a split, on the CPU."""
        pieces, taken = [], 0
        for features, targets in self.batches(name):
            pieces.append((features[: n_rows - taken], targets[: n_rows - taken]))
            taken += len(pieces[-1][0])
            if taken >= n_rows:
                break
        return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])

    def _loader(self, name: str, shuffle: bool) -> WholeBatchLoader | StreamingLoader:
        # In memory, moved to the training device here, once per fit/test, never per batch;
        # streamed, each batch is drawn on the CPU and copied to the device.
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        if self.streaming:
            stream = self.streams[name]
            sampler = EpochShuffler(stream.n_batches, self.seed) if shuffle else None
            return StreamingLoader(stream, sampler, device, rank, world_size)
        features, targets = (t.to(device) for t in self.split(name))
        sampler = EpochShuffler(len(features), self.seed) if shuffle else None
        return WholeBatchLoader(features, targets, self.batch_size, sampler, rank, world_size)

    def train_dataloader(self) -> WholeBatchLoader | StreamingLoader | Executions:
        """Batches, or executions of `steps_per_execution` batches: the config gives the data the
        model's value (`${model.steps_per_execution}`), so the two always agree."""
        loader = self._loader("train", shuffle=self.shuffle)
        steps = self.steps_per_execution
        return Executions(loader, steps) if steps > 1 else loader

    def val_dataloader(self) -> WholeBatchLoader | StreamingLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> WholeBatchLoader | StreamingLoader:
        return self._loader("test", shuffle=False)
