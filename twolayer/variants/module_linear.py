"""方案九: a custom `nn.Module` with `Linear(bias=False)` layers (default init), `MSELoss(reduction='sum')`, Adam."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twolayer.devices import synchronize, torch_dtype
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import load_linear, to_numpy64, to_tensor


class TwoLayerNet(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, hidden, bias=False)
        self.linear2 = nn.Linear(hidden, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.linear1(x).clamp(min=0))


class ModuleLinear:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem, init="linear_default")
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.model = TwoLayerNet(problem.d_in, problem.hidden, problem.d_out)
        self.model.to(device=device, dtype=torch_dtype(problem.dtype))
        load_linear(self.model.linear1, weights.w1)
        load_linear(self.model.linear2, weights.w2)
        self.loss_fn = nn.MSELoss(reduction="sum")
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
        return {
            "w1": to_numpy64(self.model.linear1.weight.grad).T,
            "w2": to_numpy64(self.model.linear2.weight.grad).T,
        }

    def synchronize(self) -> None:
        synchronize(self.device)
