"""Lesson 1: tensors, the arrays everything else is made of.

A tensor is an n-dimensional array of numbers of one type (its `dtype`) that lives on one device
(the CPU or a GPU). Models take tensors in, hold their weights as tensors and give tensors out.

Used for real in src/linreg/data/synthetic.py: the synthetic data is built from `torch.randn`
with a seeded generator, `@` and broadcasting (`features @ weight.T + bias`); batches are slices
of one tensor.

Run: python docs/tutorial/lesson_01_tensors.py
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def main() -> dict[str, Any]:
    print("== Creating tensors ==")
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float32, device="cpu")
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    print(f"a = {a.tolist()}  dtype={a.dtype} device={a.device} shape={tuple(a.shape)}")
    print(f"w requires_grad={w.requires_grad}: autograd will record operations on it (lesson 2)")
    print(f"ones(2, 3) = {torch.ones(2, 3).tolist()}")
    generator = torch.Generator().manual_seed(0)
    print(f"rand(2, generator seeded 0) = {torch.rand(2, generator=generator).tolist()}")

    # The source presents torch.tensor(data, dtype, device, requires_grad, pin_memory) as the
    # constructor of torch.Tensor, options by position. torch.tensor is a function whose options
    # are keywords only; torch.Tensor is the class, whose constructor takes no dtype at all.
    positional_error = error_of(lambda: torch.tensor([1.0, 2.0], torch.float64))
    class_error = error_of(lambda: torch.Tensor([1.0, 2.0], dtype=torch.float64))
    print(f"[correction 16] torch.tensor([1.0, 2.0], torch.float64) fails: {positional_error}")
    print(
        "[correction 16] torch.Tensor([1.0, 2.0], dtype=torch.float64) fails too, the class takes "
        f"no dtype ({class_error.removesuffix(':')}); write torch.tensor(data, dtype=..., "
        "device=...)"
    )

    # The source tutorial passes pin_memory=True when creating a tensor, as if it were a harmless
    # speed-up. Page-locked ("pinned") host memory exists for one purpose: copies to a GPU that
    # can overlap with computation (`.to("cuda", non_blocking=True)`, lesson 6).
    pinned_error = error_of(lambda: torch.tensor([1.0, 2.0], pin_memory=True))
    if pinned_error:
        print(f"[correction 15] pin_memory=True without an accelerator fails: {pinned_error}")
    else:
        print("[correction 15] pin_memory=True worked: an accelerator is present; its point is")
        print("  non_blocking copies to it (lesson 6), not faster tensors on the CPU")

    print("\n== Element-wise arithmetic ==")
    print(f"a + 1 = {(a + 1).tolist()}")
    square = (a * a).tolist()
    print(f"a * a = {square}   (element by element, not a matrix product)")
    b = torch.tensor([[3.0, 1.0, 4.0], [1.0, 5.0, 0.0]])
    elementwise_min = torch.min(a, b).tolist()
    smaller = torch.min(torch.tensor(3.0), torch.tensor(5.0)).item()
    print(
        f"[correction 4] torch.min(h, i) of two one-value (0-d) tensors is the smaller value, "
        f"{smaller}, as the source says; of tensors of several values it is element-wise, "
        f"torch.min(a, b) = {elementwise_min} (and torch.max(d, e) likewise, not 'the max'); "
        f"the reduction is torch.min(a) = {torch.min(a).item()} or a.min(dim=1)"
    )

    print("\n== dot vs matmul ==")
    v = torch.tensor([1.0, 2.0, 3.0])
    dot = torch.dot(v, v).item()
    print(f"torch.dot(v, v) = {dot}   (1-D tensors only)")
    dot_2d_error = error_of(lambda: torch.dot(a, a))
    print(f"[correction 1] torch.dot on 2-D tensors fails: {dot_2d_error}")
    matmul_error = error_of(lambda: a @ a)
    print(f"[correction 2] (2,3) @ (2,3) fails, inner sizes differ: {matmul_error}")
    matmul_shape = tuple((a @ a.T).shape)
    print(f"(2,3) @ (3,2) works: shape {matmul_shape}")

    print("\n== Broadcasting: how shapes that differ combine ==")
    # Shapes are compared from the last dimension backwards; two sizes fit when they are equal or
    # one of them is 1 (a missing dimension counts as 1). The size-1 side is stretched, not copied.
    row = torch.tensor([10.0, 20.0, 30.0])
    with_row = (a + row).tolist()
    print(f"(2,3) + (3,) adds the row to every row: {with_row}")
    outer = tuple((torch.ones(2, 1) + torch.ones(1, 3)).shape)
    print(f"(2,1) + (1,3) stretches both: shape {outer}")
    broadcast_error = error_of(lambda: a + torch.ones(4, 3))
    print(f"[correction 3] (2,3) + (4,3) fails: 2 vs 4, neither is 1: {broadcast_error}")

    print("\n== cat along a dimension ==")
    cat_rows = tuple(torch.cat([a, a], dim=0).shape)
    cat_cols = tuple(torch.cat([a, a], dim=1).shape)
    print(f"cat dim=0 stacks rows: {cat_rows}; dim=1 stacks columns: {cat_cols}")

    print("\n== Reductions ==")
    values, indices = a.max(dim=1)
    mean, sum_dim0 = a.mean().item(), a.sum(dim=0).tolist()
    print(f"mean() = {a.mean().item()}, sum(dim=0) = {a.sum(dim=0).tolist()} (one per column)")
    print(
        f"max() = {a.max().item()}; max(dim=1) gives values {values.tolist()} and their indices "
        f"{indices.tolist()}; min(dim=1).values = {a.min(dim=1).values.tolist()}"
    )

    print("\n== NumPy: shared memory, not copies ==")
    array = a.detach().numpy()
    array[0, 0] = 100.0
    print(
        f"a.detach().numpy() shares a's memory: writing 100 to the array makes a[0,0] = {a[0, 0]}"
    )
    source = np.zeros(3)
    view = torch.from_numpy(source)
    view += 7
    print(f"torch.from_numpy shares too: adding 7 to the tensor makes the array {source.tolist()}")

    # What tests/test_tutorial.py checks.
    return {
        "positional_error": positional_error, "class_error": class_error,
        "pinned_error": pinned_error, "elementwise_square": square,
        "elementwise_min": elementwise_min, "dot": dot, "dot_2d_error": dot_2d_error,
        "matmul_error": matmul_error, "matmul_shape": matmul_shape, "with_row": with_row,
        "outer_shape": outer, "broadcast_error": broadcast_error, "cat_rows": cat_rows,
        "cat_cols": cat_cols, "mean": mean, "sum_dim0": sum_dim0,
        "max_dim1": (values.tolist(), indices.tolist()), "tensor_sees_numpy_write": a[0, 0].item(),
        "numpy_sees_tensor_write": source.tolist(),
    }  # fmt: skip


def error_of(operation: Callable[[], object]) -> str | None:
    """The first line of the error `operation` raises, or None if it works."""
    try:
        operation()
    except (RuntimeError, TypeError, AssertionError) as err:  # the last: a build without CUDA
        return str(err).strip().splitlines()[0]
    return None


if __name__ == "__main__":
    main()
