"""Lesson 2: autograd records operations and computes gradients with `backward()`.

A gradient says how much a number (the loss) changes when each input changes a little: the
direction in which training nudges every weight. Autograd records the operations on tensors that
`requires_grad`, and `backward()` walks that record back to fill each leaf's `.grad`.

Used for real in src/linreg/models/module.py: Lightning calls `loss.backward()` on the MSE loss
returned by `training_step`, and every optimizer step reads the `.grad` it leaves on the
parameters.

Run: python docs/tutorial/lesson_02_autograd.py
"""

from __future__ import annotations

from typing import Any

import torch


def main() -> dict[str, Any]:
    print("== Only what requires grad is recorded ==")
    a, b = torch.ones(2), torch.ones(2)
    plain_sum = a + b
    print(
        f"[correction 5] a + b of ordinary tensors: grad_fn = {plain_sum.grad_fn} "
        "(arithmetic is plain arithmetic; autograd records only when an input requires grad)"
    )
    recorded = a.requires_grad_() + b
    print(f"with a.requires_grad_(): grad_fn = {type(recorded.grad_fn).__name__}")

    print("\n== The worked example ==")
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    z = 3 * y * y
    out = z.mean()
    print(f"x = ones(2,2), y = x + 2, z = 3*y*y, out = z.mean() = {out.item()}")
    print(f"y.grad_fn = {type(y.grad_fn).__name__}: y remembers it came from an addition")
    out.backward()
    gradient = x.grad.tolist()
    print(
        "out = (1/4) * sum_i 3 * (x_i + 2)^2, so d out / d x_i = (3/2) * (x_i + 2) = 4.5 at x = 1"
    )
    print(
        f"[correction 6] x.grad = {gradient}: 4.5 everywhere and shaped like x, 2x2 (not "
        "[12., 12.], whose shape is wrong as well as its values)"
    )
    z_grad = torch.autograd.grad((3 * (x + 2) ** 2).sum(), x)[0][0, 0].item()  # a fresh graph
    print(
        f"[correction 6] dz/dx = 6 (x + 2) = {z_grad} at x = 1; the source's 6 (2x + 1) is another"
        " function that happens to agree at x = 1 only: at x = 2 they give 24 and 30"
    )

    print("\n== The graph is recorded as the code runs ==")
    # The source says other frameworks make you write backpropagation by hand and PyTorch is
    # "more efficient". TensorFlow, JAX and others differentiate automatically too; PyTorch
    # records the graph while ordinary Python runs, so loops and ifs that depend on the values
    # are differentiated as they ran this time.
    t = torch.tensor(3.0, requires_grad=True)
    doubled, doublings = t, 0
    while doubled < 100:  # how many doublings depends on t's value
        doubled, doublings = doubled * 2, doublings + 1
    doubled.backward()
    print(
        f"[correction 18] t = 3 doubled while below 100: {doublings} doublings, d/dt = "
        f"{t.grad.item():g} = 2^{doublings}. Automatic differentiation is not PyTorch's alone "
        "(TensorFlow, JAX have it) and not a matter of efficiency: PyTorch's form of it records "
        "the graph as the code runs, so a loop like this one is differentiated as it ran"
    )

    print("\n== Gradients accumulate until you clear them ==")
    (3 * (x + 2) ** 2).mean().backward()
    accumulated = x.grad[0, 0].item()
    print(f"a second backward() adds to .grad: {accumulated} (4.5 + 4.5)")
    x.grad.zero_()
    after_zero = x.grad[0, 0].item()
    print(f"x.grad.zero_() fills the gradient with zeros: {after_zero}")
    optimizer = torch.optim.SGD([x], lr=0.1)
    optimizer.zero_grad()
    cleared = x.grad
    print(
        f"optimizer.zero_grad() does not: since torch 2.0 it sets .grad to {cleared} "
        "(set_to_none=True), which frees the memory and skips the addition next time"
    )

    print("\n== Turning recording off ==")
    with torch.no_grad():
        no_grad_requires_grad = (x * 2).requires_grad
    with torch.inference_mode():
        inference_requires_grad = (x * 2).requires_grad
    detached = x.detach()
    print(
        f"under no_grad: requires_grad={no_grad_requires_grad}; under inference_mode: "
        f"{inference_requires_grad} (faster still, for evaluation and serving)"
    )
    print(
        f"x.detach(): same memory ({detached.data_ptr() == x.data_ptr()}), outside the graph "
        f"(requires_grad={detached.requires_grad})"
    )

    # What tests/test_tutorial.py checks.
    return {
        "plain_grad_fn": plain_sum.grad_fn, "out": out.item(), "gradient": gradient,
        "z_grad": z_grad, "accumulated": accumulated, "after_zero": after_zero,
        "zero_grad_leaves": cleared, "no_grad_requires_grad": no_grad_requires_grad,
        "inference_requires_grad": inference_requires_grad,
        "detached_requires_grad": detached.requires_grad,
        "detached_shares_storage": detached.data_ptr() == x.data_ptr(),
        "doublings": doublings, "loop_gradient": t.grad.item(),
    }  # fmt: skip


if __name__ == "__main__":
    main()
