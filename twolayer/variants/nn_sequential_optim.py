"""方案七: `nn.Sequential` without bias, `MSELoss(reduction='sum')` and `torch.optim.SGD`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twolayer.devices import synchronize, torch_dtype
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import load_linear, to_numpy64, to_tensor


class NNSequentialOptim:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem, init="normal")
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.model = nn.Sequential(
            nn.Linear(problem.d_in, problem.hidden, bias=False),
            nn.ReLU(),
            nn.Linear(problem.hidden, problem.d_out, bias=False),
        ).to(device=device, dtype=torch_dtype(problem.dtype))
        load_linear(self.model[0], weights.w1)
        load_linear(self.model[2], weights.w2)
        self.loss_fn = nn.MSELoss(reduction="sum")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=problem.learning_rate)

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
        return {"w1": to_numpy64(self.model[0].weight.grad).T, "w2": to_numpy64(self.model[2].weight.grad).T}

    def synchronize(self) -> None:
        synchronize(self.device)
