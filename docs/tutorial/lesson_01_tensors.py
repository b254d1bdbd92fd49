"""Lesson 1: tensors, the arrays everything else is made of.

Used for real in src/linreg/data.py: the synthetic data is built from `torch.randn` with a seeded
generator, `@` and broadcasting (`features @ weight.T + bias`); batches are slices of one tensor.

Run: python docs/tutorial/lesson_01_tensors.py
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def main() -> dict[str, Any]:
    facts: dict[str, Any] = {}

    print("== Creating tensors ==")
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float32, device="cpu")
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    print(f"a = {a.tolist()}  dtype={a.dtype} device={a.device} shape={tuple(a.shape)}")
    print(f"w requires_grad={w.requires_grad}: autograd will record operations on it (lesson 2)")
    print(f"ones(2, 3) = {torch.ones(2, 3).tolist()}")
    generator = torch.Generator().manual_seed(0)
    print(f"rand(2, generator seeded 0) = {torch.rand(2, generator=generator).tolist()}")
    if torch.cuda.is_available():
        pinned = torch.tensor([1.0, 2.0], pin_memory=True)
        print(f"pin_memory=True: page-locked host memory for fast GPU copies: {pinned.is_pinned()}")
        facts["pinned"] = pinned.is_pinned()
    else:
        print("pin_memory=True needs a GPU backend (page-locked memory is for host->GPU copies);")
        print("  on a CPU-only machine torch refuses it, so it is skipped here")
        facts["pinned"] = None

    print("\n== Element-wise arithmetic ==")
    print(f"a + 1 = {(a + 1).tolist()}")
    print(f"a * a = {(a * a).tolist()}   (element by element, not a matrix product)")
    facts["elementwise_square"] = (a * a).tolist()

    print("\n== dot vs matmul ==")
    v = torch.tensor([1.0, 2.0, 3.0])
    facts["dot"] = torch.dot(v, v).item()
    print(f"torch.dot(v, v) = {facts['dot']}   (1-D tensors only)")
    facts["dot_2d_error"] = _error_of(lambda: torch.dot(a, a))
    print(f"torch.dot on 2-D tensors fails: {facts['dot_2d_error']}")
    facts["matmul_error"] = _error_of(lambda: a @ a)
    print(f"(2,3) @ (2,3) fails, inner sizes differ: {facts['matmul_error']}")
    facts["matmul_shape"] = tuple((a @ a.T).shape)
    print(f"(2,3) @ (3,2) works: shape {facts['matmul_shape']}")

    print("\n== cat along a dimension ==")
    facts["cat_rows"] = tuple(torch.cat([a, a], dim=0).shape)
    facts["cat_cols"] = tuple(torch.cat([a, a], dim=1).shape)
    print(f"cat dim=0 stacks rows: {facts['cat_rows']}; dim=1 stacks columns: {facts['cat_cols']}")

    print("\n== Reductions ==")
    facts["mean"] = a.mean().item()
    facts["sum_dim0"] = a.sum(dim=0).tolist()
    values, indices = a.max(dim=1)
    facts["max"] = a.max().item()
    facts["max_dim1"] = (values.tolist(), indices.tolist())
    print(f"mean() = {facts['mean']}, sum(dim=0) = {facts['sum_dim0']} (one per column)")
    print(
        f"max() = {facts['max']}; max(dim=1) gives values {values.tolist()} and their indices "
        f"{indices.tolist()}; min(dim=1).values = {a.min(dim=1).values.tolist()}"
    )

    print("\n== NumPy: shared memory, not copies ==")
    array = a.detach().numpy()
    array[0, 0] = 100.0
    facts["tensor_sees_numpy_write"] = a[0, 0].item()
    print(
        f"a.detach().numpy() shares a's memory: writing 100 to the array makes a[0,0] = "
        f"{facts['tensor_sees_numpy_write']}"
    )
    source = np.zeros(3)
    view = torch.from_numpy(source)
    view += 7
    facts["numpy_sees_tensor_write"] = source.tolist()
    print(f"torch.from_numpy shares too: adding 7 to the tensor makes the array {source.tolist()}")
    return facts


def _error_of(operation: Any) -> str:
    try:
        operation()
    except RuntimeError as err:
        return str(err)
    raise AssertionError("expected the operation to fail")


if __name__ == "__main__":
    main()
