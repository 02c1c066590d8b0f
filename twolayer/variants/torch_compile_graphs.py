"""Beyond the tutorial (cuda): 方案二's iteration under `torch.compile(mode="reduce-overhead")`, that is
inductor's own CUDA graphs: the idiomatic counterpart to the hand-made `cuda_graph`.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.variants.torch_compile_graphs".
"""

from __future__ import annotations

import numpy as np
import torch

from twolayer.devices import synchronize
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants import functional
from twolayer.variants.tensors import to_numpy64, to_tensor
from twolayer.variants.torch_compile import CompiledOnFirstCall

MODE = "reduce-overhead"


class TorchCompileGraphs:
    def __init__(self, problem: Problem, device: str = "cuda") -> None:
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.w1, self.w2 = to_tensor(weights.w1, device), to_tensor(weights.w2, device)
        for tensor in (self.x, self.y, self.w1, self.w2):
            torch._dynamo.mark_static_address(tensor)
        self.learning_rate = problem.learning_rate
        self.compile_seconds: dict[str, float] = {}
        self._forward = CompiledOnFirstCall("forward", functional.forward, device, self.compile_seconds, MODE)
        self._iteration = CompiledOnFirstCall("iteration", functional.iteration, device, self.compile_seconds, MODE)
        self._loss: torch.Tensor | None = None
        self._gradients: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def reset_compile_caches() -> None:
        torch._dynamo.reset()

    def forward(self) -> None:
        torch.compiler.cudagraph_mark_step_begin()
        self._loss = self._forward.call(self.x, self.y, self.w1, self.w2)[0]
        self._gradients = None  # the last iteration's outputs may be overwritten from here on

    def backward(self) -> None:
        raise NotImplementedError("torch_compile_graphs replays backward only as part of the whole iteration")

    def step(self) -> None:
        raise NotImplementedError("torch_compile_graphs replays the update only as part of the whole iteration")

    def iteration(self) -> None:
        torch.compiler.cudagraph_mark_step_begin()
        self._loss, grad_w1, grad_w2 = self._iteration.call(self.x, self.y, self.w1, self.w2, self.learning_rate)
        self._gradients = (grad_w1, grad_w2)

    def loss(self) -> float:
        if self._loss is None:
            raise RuntimeError("torch_compile_graphs has no loss before its first forward() or iteration()")
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients the last iteration applied (read before the next call replaces them)."""
        if self._gradients is None:
            raise RuntimeError("torch_compile_graphs has gradients only right after an iteration()")
        grad_w1, grad_w2 = self._gradients
        return {"w1": to_numpy64(grad_w1), "w2": to_numpy64(grad_w2)}

    def synchronize(self) -> None:
        synchronize(self.device)
