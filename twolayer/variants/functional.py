"""方案二's maths as pure functions of tensors, for the variants that hand a whole phase to a compiler
(`torch_compile`) or to the GPU in one launch (`cuda_graph`).

Backward reuses forward's `y_pred - y` rather than recomputing it, and
`grad_h[h < 0] = 0` becomes `masked_fill(h < 0, 0)`: the same values as one out-of-place op,
which a compiler can fuse and a CUDA graph can capture without relying on indexing fast paths.
"""

from __future__ import annotations

import torch
from torch import Tensor


def forward(x: Tensor, y: Tensor, w1: Tensor, w2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The loss, and what backward needs: h, h_relu and y_pred - y."""
    h = x.mm(w1)
    h_relu = h.clamp(min=0)
    diff = h_relu.mm(w2) - y
    return diff.pow(2).sum(), h, h_relu, diff


def backward(x: Tensor, w2: Tensor, h: Tensor, h_relu: Tensor, diff: Tensor) -> tuple[Tensor, Tensor]:
    grad_y_pred = 2.0 * diff
    grad_w2 = h_relu.t().mm(grad_y_pred)
    grad_h = grad_y_pred.mm(w2.t()).masked_fill(h < 0, 0)
    grad_w1 = x.t().mm(grad_h)
    return grad_w1, grad_w2


def step(w1: Tensor, w2: Tensor, grad_w1: Tensor, grad_w2: Tensor, learning_rate: float) -> None:
    w1.sub_(learning_rate * grad_w1)
    w2.sub_(learning_rate * grad_w2)


def iteration(x: Tensor, y: Tensor, w1: Tensor, w2: Tensor, learning_rate: float) -> tuple[Tensor, Tensor, Tensor]:
    """One whole iteration; returns the loss before the update and the gradients it applied."""
    loss, h, h_relu, diff = forward(x, y, w1, w2)
    grad_w1, grad_w2 = backward(x, w2, h, h_relu, diff)
    step(w1, w2, grad_w1, grad_w2, learning_rate)
    return loss, grad_w1, grad_w2


__all__ = ["backward", "forward", "iteration", "step", "torch"]
