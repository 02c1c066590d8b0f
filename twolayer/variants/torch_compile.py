"""Beyond the tutorial: 方案二's hand-written iteration under `torch.compile` (cpu and cuda).

Each phase is its own compiled graph, and the whole iteration is one more, so that `iteration`
shows what fusing across the phase seams buys. A graph is compiled at its first call, which the
benchmarks make in untimed warm-up; that one-off cost is kept in `compile_seconds` and reported
separately (`compile_s`).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from twolayer.devices import synchronize
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants import functional
from twolayer.variants.tensors import to_numpy64, to_tensor

# Compiled graphs are cached on the functions' code, shared by every instance; each new shape,
# dtype or device adds an entry (dynamic=False), and fullgraph=True turns the default limit of 8
# into a hard failure, which a size sweep or a test run across devices would reach.
RECOMPILE_LIMIT = 64
for _name in ("recompile_limit", "cache_size_limit"):  # renamed across torch releases
    if hasattr(torch._dynamo.config, _name):
        setattr(torch._dynamo.config, _name, max(getattr(torch._dynamo.config, _name), RECOMPILE_LIMIT))


class CompiledOnFirstCall:
    """A `torch.compile`d function that records how long its first (compiling) call took."""

    def __init__(self, name: str, function: Callable, device: str, costs: dict[str, float],
                 mode: str | None = None) -> None:
        self.name, self.device, self.costs = name, device, costs
        self.compiled = torch.compile(function, dynamic=False, fullgraph=True, mode=mode)
        self.call = self._first_call

    def _first_call(self, *args):
        start = time.perf_counter()
        result = self.compiled(*args)
        synchronize(self.device)
        self.costs[self.name] = time.perf_counter() - start
        self.call = self.compiled  # later calls go straight to the compiled code
        return result


class TorchCompile:
    def __init__(self, problem: Problem, device: str = "cpu") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.w1, self.w2 = to_tensor(weights.w1, device), to_tensor(weights.w2, device)
        self.learning_rate = problem.learning_rate
        self.compile_seconds: dict[str, float] = {}
        compiled = {name: CompiledOnFirstCall(name, getattr(functional, name), device, self.compile_seconds)
                    for name in ("forward", "backward", "step", "iteration")}
        self._forward, self._backward = compiled["forward"], compiled["backward"]
        self._step, self._iteration = compiled["step"], compiled["iteration"]

    @staticmethod
    def reset_compile_caches() -> None:
        """Forget compiled graphs, so the next first call compiles again (inductor's disk cache stays)."""
        torch._dynamo.reset()

    def forward(self) -> None:
        self._loss, self.h, self.h_relu, self.diff = self._forward.call(self.x, self.y, self.w1, self.w2)

    def backward(self) -> None:
        self.grad_w1, self.grad_w2 = self._backward.call(self.x, self.w2, self.h, self.h_relu, self.diff)

    def step(self) -> None:
        self._step.call(self.w1, self.w2, self.grad_w1, self.grad_w2, self.learning_rate)

    def iteration(self) -> None:
        self._loss, self.grad_w1, self.grad_w2 = self._iteration.call(self.x, self.y, self.w1, self.w2, self.learning_rate)

    def loss(self) -> float:
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        return {"w1": to_numpy64(self.grad_w1), "w2": to_numpy64(self.grad_w2)}

    def synchronize(self) -> None:
        synchronize(self.device)
