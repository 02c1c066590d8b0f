"""方案六: `nn.Sequential` with bias, `MSELoss(reduction='sum')`, a manual update, `model.zero_grad()`.

The tutorial draws both weights with `nn.init.normal_` and leaves the biases at `nn.Linear`'s
default; the shared seeded draws of the same distributions stand in for them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twolayer.devices import synchronize, torch_dtype
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import load_linear, to_numpy64, to_tensor


class NNSequential:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem, init="normal")
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.model = nn.Sequential(
            nn.Linear(problem.d_in, problem.hidden, bias=True),  # w_1 * x + b_1
            nn.ReLU(),
            nn.Linear(problem.hidden, problem.d_out, bias=True),
        ).to(device=device, dtype=torch_dtype(problem.dtype))
        load_linear(self.model[0], weights.w1, weights.b1)
        load_linear(self.model[2], weights.w2, weights.b2)
        self.loss_fn = nn.MSELoss(reduction="sum")
        self.learning_rate = problem.learning_rate

    def forward(self) -> None:
        y_pred = self.model(self.x)
        self._loss = self.loss_fn(y_pred, self.y)  # computation graph

    def backward(self) -> None:
        self._loss.backward()

    def step(self) -> None:
        with torch.no_grad():
            for param in self.model.parameters():
                param -= self.learning_rate * param.grad
        self.model.zero_grad()

    def loss(self) -> float:
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        first, second = self.model[0], self.model[2]
        return {
            "w1": to_numpy64(first.weight.grad).T,
            "w2": to_numpy64(second.weight.grad).T,
            "b1": to_numpy64(first.bias.grad),
            "b2": to_numpy64(second.bias.grad),
        }

    def synchronize(self) -> None:
        synchronize(self.device)
