"""Lesson 2: autograd records operations and computes gradients with `backward()`.

Used for real in src/linreg/model.py: Lightning calls `loss.backward()` on the MSE loss returned by
`training_step`, and every optimizer step reads the `.grad` it leaves on the parameters.

Run: python docs/tutorial/lesson_02_autograd.py
"""

from __future__ import annotations

from typing import Any

import torch


def main() -> dict[str, Any]:
    facts: dict[str, Any] = {}

    print("== The worked example ==")
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    z = 3 * y * y
    out = z.mean()
    print(f"x = ones(2,2), y = x + 2, z = 3*y*y, out = z.mean() = {out.item()}")
    print(f"y.grad_fn = {type(y.grad_fn).__name__}: y remembers it came from an addition")
    out.backward()
    facts["gradient"] = x.grad.tolist()
    print(
        "out = (1/4) * sum_i 3 * (x_i + 2)^2, so d out / d x_i = (3/2) * (x_i + 2) = 1.5 * 3 = 4.5"
    )
    print(f"x.grad = {facts['gradient']}")

    print("\n== Gradients accumulate until you zero them ==")
    (3 * (x + 2) ** 2).mean().backward()
    facts["accumulated"] = x.grad[0, 0].item()
    print(f"a second backward() adds to .grad: {facts['accumulated']} (4.5 + 4.5)")
    x.grad.zero_()
    facts["after_zero"] = x.grad[0, 0].item()
    print(f"x.grad.zero_() (what optimizer.zero_grad() does per parameter): {facts['after_zero']}")

    print("\n== Turning recording off ==")
    with torch.no_grad():
        facts["no_grad_requires_grad"] = (x * 2).requires_grad
    with torch.inference_mode():
        facts["inference_requires_grad"] = (x * 2).requires_grad
    detached = x.detach()
    facts["detached_requires_grad"] = detached.requires_grad
    facts["detached_shares_storage"] = detached.data_ptr() == x.data_ptr()
    print(
        f"under no_grad: requires_grad={facts['no_grad_requires_grad']}; under inference_mode: "
        f"{facts['inference_requires_grad']} (faster still, for evaluation and serving)"
    )
    print(
        f"x.detach(): same memory ({facts['detached_shares_storage']}), outside the graph "
        f"(requires_grad={facts['detached_requires_grad']})"
    )
    return facts


if __name__ == "__main__":
    main()
