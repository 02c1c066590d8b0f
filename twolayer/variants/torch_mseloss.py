"""方案五: autograd and SGD, with the loss from `nn.MSELoss(reduction='sum')`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twolayer.devices import synchronize
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import to_numpy64, to_tensor


class TorchMSELoss:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.w1 = to_tensor(weights.w1, device, requires_grad=True)
        self.w2 = to_tensor(weights.w2, device, requires_grad=True)
        self.optimizer = torch.optim.SGD([self.w1, self.w2], lr=problem.learning_rate)
        self.loss_fn = nn.MSELoss(reduction="sum")

    def forward(self) -> None:
        y_pred = self.x.mm(self.w1).clamp(min=0).mm(self.w2)
        self._loss = self.loss_fn(y_pred, self.y)

    def backward(self) -> None:
        self._loss.backward()

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def loss(self) -> float:
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": to_numpy64(self.w1.grad), "w2": to_numpy64(self.w2.grad)}

    def synchronize(self) -> None:
        synchronize(self.device)
