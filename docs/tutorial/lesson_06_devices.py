"""Lesson 6: devices. Nothing moves to a GPU unless you move it, and moving data costs time.

Every tensor lives on one device, and an operation needs all its tensors on the same one. A GPU
computes much faster than the CPU, but the data must be copied there first, over a link far slower
than either: copy once, compute many times.

Used for real in src/linreg/data/module.py: the DataModule moves each split to the training
device once per fit, and the batches are slices of tensors already there, never copied per batch.

Run: python docs/tutorial/lesson_06_devices.py   (the CUDA and CuPy parts run only where they exist)
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np
import torch
from lesson_01_tensors import error_of
from torch import nn


def main() -> dict[str, Any]:
    print("== Choosing a device ==")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device = {device}: 'cuda' when torch.cuda.is_available(), else 'cpu'")
    none_error = error_of(lambda: torch.device(None))
    cuda = torch.device("cuda")  # a name, made on any machine: nothing is checked yet
    cuda_error = None if torch.cuda.is_available() else error_of(lambda: torch.ones(1).to(cuda))
    print(
        "[correction 12] the source's `device = None if not use_gpu else 'cuda'`, then "
        "torch.device(device):"
    )
    print(
        f"  with use_gpu = True (the source's own setting), torch.device('cuda') is made on any "
        f"machine; without CUDA the failure comes at .to(device): {cuda_error or 'none here'}"
    )
    print(f"  with use_gpu = False, on any machine, torch.device(None) fails: {none_error}")
    print(
        "[correction 14] 'when no GPU is available, use GPU tensors' cannot be done: without a "
        "GPU, tensors stay on the CPU; choose the device as above and use it for model and data"
    )

    print("\n== Tensors stay where they were made ==")
    data = torch.ones(4, 3)
    model = nn.Linear(3, 1).to(device)  # Module.to moves the parameters, in place
    elsewhere = nn.Linear(3, 1).to("meta")  # 'meta' stands for a GPU here, on any machine
    mixed_error = error_of(lambda: elsewhere(data))
    print(
        f"[correction 13] after model.to('meta') the model is on {elsewhere.weight.device}, the "
        f"data still on {data.device}: tensors never move by themselves, and mixing devices is an "
        f"error: {mixed_error}"
    )
    moved = data.to(device)
    same_object = data.to("cpu") is data
    print(
        f"data.to(device) returns a tensor on {moved.device}: a copy when the device differs, and "
        f"the very same tensor when it is already there (data.to('cpu') is data: {same_object})"
    )
    with torch.device("meta"):  # a device with shapes and no values, here as any non-CPU one
        made_there = torch.ones(2).device
    torch.set_default_device("meta")
    default_device = torch.ones(2).device
    torch.set_default_device("cpu")
    print(
        f"only a default changes where NEW tensors go: torch.set_default_device('meta') makes "
        f"torch.ones(2) on {default_device} (also `with torch.device(...)`: {made_there})"
    )
    print(f"model(moved) works: output on {model(moved).device}")

    print("\n== Move the data once, and without waiting ==")
    print(
        "`features.to(device)` before the loop costs one copy; on every batch it costs a copy and"
    )
    print("a wait each time. From pinned memory (lesson 1) a copy can run while the GPU computes:")
    print("  features.pin_memory().to('cuda', non_blocking=True)")
    if device.type == "cuda":
        overlapped = torch.ones(1024).pin_memory().to(device, non_blocking=True)
        print(f"  done: {overlapped.device}, pinned source")

    print("\n== Zero-copy exchange through DLPack ==")
    array = np.arange(4.0)
    shared = torch.from_dlpack(array)
    shared[0] = 42.0
    print(f"torch.from_dlpack(numpy array) shares memory: array[0] is now {array[0]}")
    cupy_imported = "cupy" in sys.modules
    print(
        f"[correction 11] PyTorch never uses CuPy (imported now: {cupy_imported}); installing it "
        "speeds nothing up. The two share GPU memory through DLPack when you ask them to."
    )
    print(
        "[correction 10] CuPy's wheels are named by CUDA major version: pip install cupy-cuda12x "
        "(or cupy-cuda11x, cupy-cuda13x), not cupy-cuda90; its array type is cupy.ndarray, not "
        "cupy.core.core.ndarray"
    )
    print(
        "[correction 19] 'cp.xxx is much faster than np.xxx' depends on the size of the arrays, "
        "on copies between host and GPU (each one crosses the bus and waits), and on the devices: "
        "small arrays or a round trip per call are faster with NumPy; large arithmetic on arrays "
        "that stay on a GPU is where CuPy (or torch on cuda) gains"
    )
    cupy_shared = None
    if device.type == "cuda" and importlib.util.find_spec("cupy") is not None:
        import cupy

        on_gpu = torch.arange(4.0, device="cuda")
        as_cupy = cupy.from_dlpack(on_gpu)
        as_cupy[1] = 7.0
        cupy_shared = on_gpu[1].item() == 7.0 and isinstance(as_cupy, cupy.ndarray)
        print(f"cupy.from_dlpack(cuda tensor) is a cupy.ndarray sharing memory: {cupy_shared}")
    else:
        print("(CuPy exchange skipped: it needs CUDA and the cupy package)")

    # What tests/test_tutorial.py checks.
    return {
        "device": device.type, "none_error": none_error,
        "cuda_error": cuda_error, "model_device_after_move": elsewhere.weight.device.type,
        "data_device_after_model_move": data.device.type, "moved_device": moved.device.type,
        "to_same_device_is_same_object": same_object, "default_device": default_device.type,
        "context_device": made_there.type, "mixed_device_error": mixed_error,
        "dlpack_numpy_shared": bool(array[0] == 42.0), "cupy_imported": cupy_imported,
        "dlpack_cupy_shared": cupy_shared,
    }  # fmt: skip


if __name__ == "__main__":
    main()
