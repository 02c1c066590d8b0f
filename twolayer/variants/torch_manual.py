"""方案二: torch tensors, hand-written backward and update.

The tutorial calls `.item()` on the loss every iteration only to print it; here forward keeps the
loss as a tensor, like every other variant, and `loss()` converts it when asked.
"""

from __future__ import annotations

import numpy as np

from twolayer.devices import synchronize
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import to_numpy64, to_tensor


class TorchManual:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.w1, self.w2 = to_tensor(weights.w1, device), to_tensor(weights.w2, device)
        self.learning_rate = problem.learning_rate

    def forward(self) -> None:
        self.h = self.x.mm(self.w1)  # N * H
        self.h_relu = self.h.clamp(min=0)  # N * H
        self.y_pred = self.h_relu.mm(self.w2)  # N * D_out
        self._loss = (self.y_pred - self.y).pow(2).sum()

    def backward(self) -> None:
        grad_y_pred = 2.0 * (self.y_pred - self.y)
        self.grad_w2 = self.h_relu.t().mm(grad_y_pred)
        grad_h_relu = grad_y_pred.mm(self.w2.t())
        grad_h = grad_h_relu.clone()
        grad_h[self.h < 0] = 0
        self.grad_w1 = self.x.t().mm(grad_h)

    def step(self) -> None:
        self.w1 -= self.learning_rate * self.grad_w1
        self.w2 -= self.learning_rate * self.grad_w2

    def loss(self) -> float:
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": to_numpy64(self.grad_w1), "w2": to_numpy64(self.grad_w2)}

    def synchronize(self) -> None:
        synchronize(self.device)
