"""方案八: a custom `nn.Module` with explicit `nn.Parameter` W1, W2 (Xavier normal), `MSELoss()` (mean), Adam."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twolayer.devices import synchronize
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import to_numpy64, to_tensor


class TwoLayerNet(nn.Module):
    def __init__(self, w1: torch.Tensor, w2: torch.Tensor) -> None:
        super().__init__()
        self.W1 = nn.Parameter(w1)
        self.W2 = nn.Parameter(w2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mm(self.W1).clamp(min=0).mm(self.W2)


class ModuleParams:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem, init="xavier_normal")
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.model = TwoLayerNet(to_tensor(weights.w1, device), to_tensor(weights.w2, device))
        self.loss_fn = nn.MSELoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=problem.learning_rate)

    def forward(self) -> None:
        y_pred = self.model(self.x)
        self._loss = self.loss_fn(y_pred, self.y)  # computation graph

    def backward(self) -> None:
        self._loss.backward()

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def loss(self) -> float:
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": to_numpy64(self.model.W1.grad), "w2": to_numpy64(self.model.W2.grad)}

    def synchronize(self) -> None:
        synchronize(self.device)
