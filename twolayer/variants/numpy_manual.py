"""方案一: numpy forward, loss, hand-written backward and update."""

from __future__ import annotations

import numpy as np

from twolayer.problem import Problem, make_data, make_weights


class NumpyManual:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        if device != "cpu":
            raise ValueError(f"numpy_manual runs on cpu only, not {device!r}")
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = data.x, data.y
        self.w1, self.w2 = weights.w1, weights.w2
        self.learning_rate = problem.learning_rate

    def forward(self) -> None:
        self.h = self.x.dot(self.w1)  # N * H
        self.h_relu = np.maximum(self.h, 0)  # N * H
        self.y_pred = self.h_relu.dot(self.w2)  # N * D_out
        self._loss = np.square(self.y_pred - self.y).sum()

    def backward(self) -> None:
        grad_y_pred = 2.0 * (self.y_pred - self.y)
        self.grad_w2 = self.h_relu.T.dot(grad_y_pred)
        grad_h_relu = grad_y_pred.dot(self.w2.T)
        grad_h = grad_h_relu.copy()
        grad_h[self.h < 0] = 0
        self.grad_w1 = self.x.T.dot(grad_h)

    def step(self) -> None:
        self.w1 -= self.learning_rate * self.grad_w1
        self.w2 -= self.learning_rate * self.grad_w2

    def loss(self) -> float:
        return float(self._loss)

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": self.grad_w1.astype(np.float64), "w2": self.grad_w2.astype(np.float64)}

    def synchronize(self) -> None:
        """numpy runs synchronously: nothing to wait for."""
