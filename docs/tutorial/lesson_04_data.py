"""Lesson 4: preparing data (splits, standardisation) and serving it in batches.

Training reads the data many times, in small random batches (one pass over all rows is an epoch).
PyTorch's answer is a `Dataset` (how to get row i) and a `DataLoader` (which rows go together, in
which order, collated into one tensor per batch).

Used for real in src/linreg/data/: the project splits and standardises the same way, but serves
whole batches as slices of one shuffled tensor instead of collating them row by row; the cost of
the difference is measured below.

Run: python docs/tutorial/lesson_04_data.py
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset


def make_data(n_rows: int, n_features: int, noise_std: float, seed: int) -> tuple[Tensor, Tensor]:
    """y = X w + b + noise, with raw features of scale 5 around 3 (as real features rarely are
    centred), all drawn from one seeded generator: the same rows on every run."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n_features, 1, generator=generator)
    features = 3 + 5 * torch.randn(n_rows, n_features, generator=generator)
    noise = noise_std * torch.randn(n_rows, 1, generator=generator)
    return features, features @ weight + 0.5 + noise


class RowsDataset(Dataset):
    """What TensorDataset does, written out: the length, and row i as a (features, target) pair."""

    def __init__(self, features: Tensor, targets: Tensor) -> None:
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.features[index], self.targets[index]


def main() -> dict[str, Any]:
    print("== Preparing: split first, then standardise with the training rows only ==")
    features, targets = make_data(50_000, 8, noise_std=0.5, seed=0)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(1))
    train, val, test = order[:35_000], order[35_000:42_500], order[42_500:]
    mean, std = features[train].mean(0), features[train].std(0)
    # Statistics from the training rows alone: validation and test rows stand for new data, which
    # a model never sees before it predicts.
    standardized = (features - mean) / std
    print(f"{len(train)} train, {len(val)} val, {len(test)} test rows")
    print(f"raw feature means {features[train].mean(0)[:3].tolist()} ...")
    print(f"standardised train means ~0: {standardized[train].mean(0).abs().max().item():.1e}")

    print("\n== Dataset + DataLoader ==")
    dataset = RowsDataset(standardized[train], targets[train])
    loader = DataLoader(dataset, batch_size=256, shuffle=True)
    first_features, first_targets = next(iter(loader))
    print(
        f"len(dataset) = {len(dataset)}; a batch: features {tuple(first_features.shape)}, "
        f"targets {tuple(first_targets.shape)}; {len(loader)} batches an epoch"
    )

    print("\n== What a batch costs: collated rows or a slice ==")
    library = DataLoader(TensorDataset(standardized[train], targets[train]), 256, shuffle=True)
    started = time.perf_counter()
    rows_seen = sum(len(x) for x, _ in library)
    collated_s = time.perf_counter() - started
    started = time.perf_counter()
    shuffled_x = standardized[train][torch.randperm(len(train))]
    sliced_rows = sum(len(shuffled_x[i : i + 256]) for i in range(0, len(train), 256))
    sliced_s = time.perf_counter() - started
    print(
        f"one epoch of batches: DataLoader {collated_s * 1000:.0f} ms ({rows_seen} rows fetched one"
        f" by one, then stacked), one permutation + slices {sliced_s * 1000:.1f} ms: "
        f"{collated_s / sliced_s:.0f}x"
    )
    print("  for a model this small the loader, not the model, is the cost of a step: that is why")
    print("  src/linreg/data/loaders.py serves slices (WholeBatchLoader). With images or text read")
    print("  from disk, where each row is real work, DataLoader's workers are what you want.")

    # What tests/test_tutorial.py checks.
    return {
        "split_sizes": (len(train), len(val), len(test)),
        "standardized_train_mean": standardized[train].mean(0).abs().max().item(),
        "batch_shapes": (tuple(first_features.shape), tuple(first_targets.shape)),
        "batches_per_epoch": len(loader), "rows_per_epoch": (rows_seen, sliced_rows),
        "collated_over_sliced": collated_s / sliced_s,
    }  # fmt: skip


if __name__ == "__main__":
    main()
