"""Loaders that serve whole batches as tensor slices: no per-sample `__getitem__`, no collate.

In memory, batches are slices of one per-epoch permutation of the split; streamed, they are the
split's numbered batches in a per-epoch shuffled order. Both split the rows between DDP processes.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from linreg.batches import Batch, to_device

Item = TypeVar("Item")


def derived_seed(*parts: int) -> int:
    """A seed that depends on all of `parts` and is the same in every process and Python version
    (unlike `hash`, which is salted per process for strings)."""
    return int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0] >> 1)


def prefetched(items: Generator[Item, None, None], depth: int = 2) -> Iterator[Item]:
    """`items`, produced by a background thread up to `depth` ahead, so that reading and decoding
    a table (pyarrow and NumPy release the GIL) overlap with training on the pieces before.

    The order is that of `items`; an exception raised while producing is raised here, at the item
    it stopped; leaving early (Lightning's sanity check reads two batches) stops the thread.
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def hand_over(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over((True, item)):
                    return
        except BaseException as error:  # raised again in the consuming thread
            hand_over((False, error))
        else:
            hand_over((True, end))
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="linreg-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            produced, item = ready.get()
            if not produced:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


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

    def permutation(self, device: torch.device, length: int | None = None) -> Tensor:
        """The epoch's order of row indices: `length` of them (one pass by default), from as many
        successive permutations of the rows as that takes. Drawn on the CPU, so the order is the
        same on every device."""
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        length = length or self.n_rows
        passes = [torch.randperm(self.n_rows, generator=generator)
                  for _ in range(-(-length // self.n_rows))]  # fmt: skip
        order = torch.cat(passes) if len(passes) > 1 else passes[0]  # no copy of a single pass
        return to_device(order[:length], device)


class WholeBatchLoader:
    """Yields (features, targets) batches as views; shuffles by permuting the split once per epoch.

    Under distributed training each of `world_size` processes takes every `world_size`-th row of
    each global batch (`batch_size` rows per process), so every row is seen exactly once per pass
    and all processes get the same number of batches, as DDP requires. `sampler` and
    `batch_sampler` are the attributes Lightning inspects on a DataLoader.

    `max_batches` (shuffled only) ends an epoch after that many batches: each epoch is then a
    fresh random draw of that many batches' rows, and only those rows are gathered.
    `min_batches` makes an epoch of a smaller split that many batches, of `batch_size` rows (all
    the split's rows at most), drawn from successive passes over the split (each a fresh shuffle,
    or in order unshuffled): a few hundred rows then give an optimizer a few hundred steps of
    nearly whole-split gradients in an epoch, not two.
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
        max_batches: int | None = None,
        min_batches: int | None = None,
    ) -> None:
        if max_batches is not None and sampler is None:
            raise ValueError(
                "max_batches needs a sampler: unshuffled, every epoch would be the same"
            )
        self.features = features
        self.targets = targets
        self.batch_size = batch_size
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self.max_batches = max_batches
        self.min_batches = min_batches
        self._gathered: tuple[Tensor, Tensor] | None = None

    def _pass_bounds(self) -> list[int]:
        """Global batch boundaries of a whole pass; a last global batch too small to give every
        process a row is merged into the one before."""
        n_rows = len(self.features)
        starts = list(range(0, n_rows, self.batch_size * self.world_size))
        if len(starts) > 1 and n_rows - starts[-1] < self.world_size:
            starts.pop()
        return [*starts, n_rows]

    def _bounds(self) -> list[int]:
        """An epoch's batch boundaries: at most `max_batches` batches of a pass, at least
        `min_batches` batches of several passes."""
        bounds = self._pass_bounds()
        if self.max_batches:
            bounds = bounds[: self.max_batches + 1]
        if self.min_batches and len(bounds) - 1 < self.min_batches:
            n_rows = len(self.features)
            size = min(self.batch_size * self.world_size, n_rows - n_rows % self.world_size)
            bounds = list(range(0, size * self.min_batches + 1, size))
        return bounds

    @property
    def pass_batches(self) -> int:
        """The batches of a whole pass over the split, whatever `max_batches` keeps of it."""
        return len(self._pass_bounds()) - 1

    @property
    def passes(self) -> float:
        """The passes over the split an epoch makes (less than one where `max_batches` cut it)."""
        return self._bounds()[-1] / len(self.features)

    def __len__(self) -> int:
        return len(self._bounds()) - 1

    def __iter__(self) -> Iterator[Batch]:
        features, targets = self.features, self.targets
        bounds = self._bounds()
        order = self._order(bounds[-1], features.device)
        if order is not None:
            # Gathered into buffers allocated once: a fresh 2x-split allocation every epoch costs
            # more in page faults than the gather itself. Batches of an epoch are views of them.
            if self._gathered is None:
                self._gathered = (features.new_empty((len(order), *features.shape[1:])),
                                  targets.new_empty((len(order), *targets.shape[1:])))  # fmt: skip
            features = torch.index_select(self.features, 0, order, out=self._gathered[0])
            targets = torch.index_select(self.targets, 0, order, out=self._gathered[1])
        step = self.world_size
        for start, stop in itertools.pairwise(bounds):
            yield (
                features[start + self.rank : stop : step],
                targets[start + self.rank : stop : step],
            )

    def _order(self, length: int, device: torch.device) -> Tensor | None:
        """The rows of an epoch of `length` rows, in order; None for the split as it lies."""
        if self.sampler is not None:
            return self.sampler.permutation(device, length)
        n_rows = len(self.features)
        if length <= n_rows:
            return None
        return torch.arange(n_rows, device=device).repeat(-(-length // n_rows))[:length]


class StreamingLoader:
    """Numbered batches (`n_batches`, `batch(index, device)`) in a per-epoch shuffled order of
    batch indices. Under DDP each process takes every world_size-th batch, and the last few
    batches that cannot be shared out evenly are skipped that epoch."""

    batch_sampler = None

    def __init__(
        self,
        split: Any,  # a SyntheticStream: numbered batches, drawn on demand
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
