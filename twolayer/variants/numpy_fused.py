"""Beyond the tutorial: 方案一 as careful numpy writes it.

Every intermediate lives in a buffer allocated once (`out=`, each on a 64-byte boundary), the
data's transpose is made once, and the update is made in place, so an iteration allocates nothing
but the loss scalar. The maths is 方案一's, except that backward reuses forward's `y_pred - y`
instead of recomputing it.
"""

from __future__ import annotations

import numpy as np

from twolayer.alignment import aligned_copy, empty_aligned
from twolayer.problem import Problem, make_data, make_weights


class NumpyFused:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        if device != "cpu":
            raise ValueError(f"numpy_fused runs on cpu only, not {device!r}")
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = data.x, data.y
        self.x_t = aligned_copy(data.x.T)  # the data never changes: transpose it once
        self.w1, self.w2 = weights.w1, weights.w2
        self.learning_rate = self.x.dtype.type(problem.learning_rate)
        empty = lambda *shape: empty_aligned(shape, self.x.dtype)  # noqa: E731
        n, hidden, d_out = problem.n, problem.hidden, problem.d_out
        self.h, self.h_relu, self.y_pred, self.diff = empty(n, hidden), empty(n, hidden), empty(n, d_out), empty(n, d_out)
        self.negative = empty_aligned((n, hidden), bool)
        self.grad_y_pred, self.grad_h = empty(n, d_out), empty(n, hidden)
        self.grad_w1, self.grad_w2 = empty(*self.w1.shape), empty(*self.w2.shape)
        self.update_w1, self.update_w2 = empty(*self.w1.shape), empty(*self.w2.shape)

    def forward(self) -> None:
        np.dot(self.x, self.w1, out=self.h)
        np.maximum(self.h, 0, out=self.h_relu)
        np.dot(self.h_relu, self.w2, out=self.y_pred)
        np.subtract(self.y_pred, self.y, out=self.diff)
        flat = self.diff.reshape(-1)
        self._loss = np.dot(flat, flat)

    def backward(self) -> None:
        np.multiply(self.diff, 2, out=self.grad_y_pred)
        np.dot(self.h_relu.T, self.grad_y_pred, out=self.grad_w2)
        np.dot(self.grad_y_pred, self.w2.T, out=self.grad_h)
        np.less(self.h, 0, out=self.negative)
        np.copyto(self.grad_h, 0, where=self.negative)
        np.dot(self.x_t, self.grad_h, out=self.grad_w1)

    def step(self) -> None:
        # w -= lr * grad, with the product in a buffer of its own rather than a fresh temporary.
        np.multiply(self.grad_w1, self.learning_rate, out=self.update_w1)
        np.subtract(self.w1, self.update_w1, out=self.w1)
        np.multiply(self.grad_w2, self.learning_rate, out=self.update_w2)
        np.subtract(self.w2, self.update_w2, out=self.w2)

    def loss(self) -> float:
        return float(self._loss)

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": self.grad_w1.astype(np.float64), "w2": self.grad_w2.astype(np.float64)}

    def synchronize(self) -> None:
        """numpy runs synchronously: nothing to wait for."""
