"""The LightningDataModule over any RegressionSource: in-memory or streamed splits, DDP shares,
per-epoch shuffles and executions of several training batches. It knows nothing of the model:
`steps_per_execution` comes from the config (`${model.steps_per_execution}`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from linreg.batches import Batch
from linreg.data.loaders import EpochShuffler, WholeBatchLoader
from linreg.data.source import GroundTruth, RegressionSource, SplitLoader, StreamedSplit
from linreg.execution import Executions


class RegressionDataModule(pl.LightningDataModule):
    """Serves a source's splits; the source is read once, at the first `setup`."""

    def __init__(
        self,
        source: RegressionSource,
        *,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        streaming: bool = False,
        steps_per_execution: int = 1,
        min_batches_per_epoch: int | None = None,
        max_batches_per_epoch: int | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.batch_size = batch_size
        self.min_batches_per_epoch = min_batches_per_epoch
        self.max_batches_per_epoch = max_batches_per_epoch
        self.eval_batch_size = eval_batch_size or batch_size
        self.served_train: WholeBatchLoader | None = None  # the last in-memory training loader
        self.seed = seed
        self.shuffle = shuffle
        self.streaming = streaming
        self.steps_per_execution = steps_per_execution
        self.splits: dict[str, Batch] = {}
        self.streams: dict[str, StreamedSplit] = {}

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """A batch, or an execution's list of them, as it is when it already lies on `device` (a
        split held in memory there): Lightning's generic walk over the collection costs more than
        an optimizer step on small batches. Anything else moves as Lightning moves it."""
        if _lies_on(batch, device):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    @property
    def n_features(self) -> int:
        return self.source.n_features

    @property
    def n_targets(self) -> int:
        return self.source.n_targets

    @property
    def ground_truth(self) -> GroundTruth | None:
        return self.source.ground_truth

    def setup(self, stage: str | None = None) -> None:
        """Read the source once (streamed: only its batch index); later calls reuse it."""
        if self.splits or self.streams:
            return
        if self.streaming:
            self.streams = self.source.stream(self.batch_size)
        else:
            self.splits = self.source.load()

    def split(self, name: str) -> Batch:
        """The (features, targets) of one in-memory split, on the CPU."""
        self.setup()
        if self.streaming:
            raise RuntimeError("a streamed split is never held whole: use batches() or sample()")
        return self.splits[name]

    def rows(self, name: str) -> int:
        """How many rows a split measures on (in memory or streamed)."""
        self.setup()
        return self.streams[name].n_rows if self.streaming else len(self.splits[name][0])

    def batches(self, name: str) -> Iterator[Batch]:
        """The whole split, on the CPU, in pieces that fit in memory (one piece when in memory)."""
        self.setup()
        if not self.streaming:
            yield self.splits[name]
            return
        yield from self.streams[name].loader(None, torch.device("cpu"))

    def reference_batches(self, name: str) -> Iterator[Batch]:
        """A split as the least-squares reference reads it: the source's full precision where it
        has more than it serves (a table's float64), else the served rows."""
        self.setup()
        exact = self.source.full_precision(name)
        return self.batches(name) if exact is None else exact

    def sample(self, name: str, n_rows: int) -> Batch:
        """The first `n_rows` rows (at most) of a split, on the CPU."""
        pieces, taken = [], 0
        for features, targets in self.batches(name):
            pieces.append((features[: n_rows - taken], targets[: n_rows - taken]))
            taken += len(pieces[-1][0])
            if taken >= n_rows:
                break
        return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])

    def _loader(self, name: str, shuffle: bool) -> SplitLoader:
        # In memory, moved to the training device here, once per fit/test, never per batch;
        # streamed, each batch is read on the CPU and copied to the device.
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        self.setup()
        if self.streaming:
            seed = self.seed if shuffle else None
            return self.streams[name].loader(seed, device, rank, world_size)
        features, targets = (t.to(device) for t in self.split(name))
        sampler = EpochShuffler(len(features), self.seed) if shuffle else None
        if name != "train":  # no gradients: larger batches, fewer steps, the same sums
            return WholeBatchLoader(features, targets, self.eval_batch_size, None, rank, world_size)
        cap = self.max_batches_per_epoch if shuffle else None
        self.served_train = WholeBatchLoader(
            features, targets, self.batch_size, sampler, rank, world_size,
            max_batches=cap, min_batches=self.min_batches_per_epoch,
        )  # fmt: skip
        return self.served_train

    def epoch_batches(self) -> tuple[int, int, float] | None:
        """(batches an epoch trains on, batches a pass over the training split holds, passes an
        epoch makes), per process, where `max_batches_per_epoch` or `min_batches_per_epoch` made
        an epoch other than one pass; None where they did not (streamed data always makes
        whole passes)."""
        loader = self.served_train
        if loader is None or len(loader) == loader.pass_batches:
            return None
        return len(loader), loader.pass_batches, loader.passes

    def train_dataloader(self) -> SplitLoader | Executions:
        """Batches, or executions of `steps_per_execution` batches."""
        loader = self._loader("train", shuffle=self.shuffle)
        steps = self.steps_per_execution
        return Executions(loader, steps) if steps > 1 else loader

    def val_dataloader(self) -> SplitLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> SplitLoader:
        return self._loader("test", shuffle=False)


def _lies_on(batch: Any, device: torch.device) -> bool:
    """Whether `batch` is a (features, targets) pair, or a list of them, all on `device`."""
    pairs = batch if isinstance(batch, list) else [batch]
    return all(
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and all(isinstance(tensor, Tensor) and tensor.device == device for tensor in pair)
        for pair in pairs
    )
