"""A batch of rows, and moving one to the device it is used on."""

from __future__ import annotations

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]  # (features, targets)


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """`tensor` on `device`; to a GPU through pinned memory, so the copy does not wait for the GPU's
    queue to drain (a copy from pageable memory does)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
