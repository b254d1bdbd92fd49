"""Lesson 5: devices. Nothing moves to a GPU unless you move it, and moving data costs time.

Used for real in src/linreg/data.py: the DataModule moves each split to the training device once per
fit, and the batches are slices of tensors already there, never copied per batch.

Run: python docs/tutorial/lesson_05_devices.py   (the CUDA and CuPy parts run only where they exist)
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import torch
from torch import nn


def main() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    facts["device"] = device.type
    print(f"chosen device: {device} (torch.cuda.is_available() = {torch.cuda.is_available()})")

    print("\n== Tensors stay where they were made ==")
    data = torch.ones(4, 3)
    model = nn.Linear(3, 1).to(device)  # Module.to moves the parameters in place
    facts["data_device_after_model_move"] = data.device.type
    print(
        f"after model.to({device}), the data is still on: {data.device} "
        "(CPU tensors never move to a GPU automatically)"
    )
    moved = data.to(device)  # Tensor.to returns a new tensor; `data` itself is unchanged
    facts["tensor_to_is_not_in_place"] = data.device.type == "cpu"
    print(f"data.to(device) returns a new tensor on {moved.device}; data stays on {data.device}")
    facts["to_same_device_is_free"] = data.to("cpu") is data
    print(
        f"data.to('cpu') on a CPU tensor returns the very same object: "
        f"{facts['to_same_device_is_free']} (no copy)"
    )
    if device.type == "cuda":
        try:
            model(data)
        except RuntimeError as err:
            facts["mixed_device_error"] = str(err).splitlines()[0]
            print(f"a CUDA model on CPU data fails: {facts['mixed_device_error']}")
    print(f"model(moved) works: output on {model(moved).device}")

    print("\n== Move the data once, not once per batch ==")
    print(
        "for a full pass, `features.to(device)` before the loop costs one copy; calling it on every"
    )
    print("batch costs one copy per batch and a synchronisation each time.")

    print("\n== Zero-copy exchange through DLPack ==")
    array = np.arange(4.0)
    shared = torch.from_dlpack(array)
    shared[0] = 42.0
    facts["dlpack_numpy_shared"] = array[0] == 42.0
    print(f"torch.from_dlpack(numpy array) shares memory: array[0] is now {array[0]}")
    if device.type == "cuda" and importlib.util.find_spec("cupy") is not None:
        import cupy

        on_gpu = torch.arange(4.0, device="cuda")
        as_cupy = cupy.from_dlpack(on_gpu)
        as_cupy[1] = 7.0
        facts["dlpack_cupy_shared"] = on_gpu[1].item() == 7.0
        print(
            f"cupy.from_dlpack(cuda tensor) shares GPU memory: tensor[1] is now {on_gpu[1].item()}"
        )
    else:
        facts["dlpack_cupy_shared"] = None
        print("(CuPy exchange skipped: it needs CUDA and the cupy package)")
    return facts


if __name__ == "__main__":
    main()
