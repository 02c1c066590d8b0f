"""Beyond the tutorial (cuda only): 方案二's whole iteration captured once in a CUDA graph and replayed.

At this size an eager iteration is a dozen small kernels, each paying a launch; a graph replays
them all in one launch. The weights and every intermediate live in static tensors that the
graphs read and write in place. A second graph holds the forward pass alone. Backward and step
cannot be replayed apart from the forward that feeds them, so this variant declares only the
`forward` and `iteration` phases; the others are reported as not applicable, never faked.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants import functional
from twolayer.variants.tensors import to_numpy64, to_tensor

WARMUP_ITERATIONS = 3  # eager runs on a side stream before capture: cuBLAS handles, allocator pools


class CudaGraph:
    def __init__(self, problem: Problem, device: str = "cuda") -> None:
        if device != "cuda":
            raise ValueError(f"cuda_graph runs on cuda only, not {device!r}")
        self.device = device
        data, weights = make_data(problem), make_weights(problem)
        self.x, self.y = to_tensor(data.x, device), to_tensor(data.y, device)
        self.w1, self.w2 = to_tensor(weights.w1, device), to_tensor(weights.w2, device)
        self.learning_rate = problem.learning_rate
        start = time.perf_counter()
        self._capture()
        self.compile_seconds = {"capture": time.perf_counter() - start}

    def _capture(self) -> None:
        initial_w1, initial_w2 = self.w1.clone(), self.w2.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_ITERATIONS):
                functional.iteration(self.x, self.y, self.w1, self.w2, self.learning_rate)
        torch.cuda.current_stream().wait_stream(side)
        # Capture records kernels without running them; the warm-up did run, so undo its updates.
        self.iteration_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.iteration_graph):
            self.iteration_out = functional.iteration(self.x, self.y, self.w1, self.w2, self.learning_rate)
        self.forward_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.forward_graph):
            self.forward_out = functional.forward(self.x, self.y, self.w1, self.w2)
        self.w1.copy_(initial_w1)
        self.w2.copy_(initial_w2)
        torch.cuda.synchronize()
        self._loss = None
        self._iterated = False

    def forward(self) -> None:
        self.forward_graph.replay()
        self._loss = self.forward_out[0]

    def backward(self) -> None:
        raise NotImplementedError("cuda_graph replays backward only as part of the whole iteration")

    def step(self) -> None:
        raise NotImplementedError("cuda_graph replays the update only as part of the whole iteration")

    def iteration(self) -> None:
        self.iteration_graph.replay()
        self._loss = self.iteration_out[0]
        self._iterated = True

    def loss(self) -> float:
        if self._loss is None:
            raise RuntimeError("cuda_graph has no loss before its first forward() or iteration()")
        return self._loss.item()

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients the last replayed iteration applied."""
        if not self._iterated:  # captured outputs hold uninitialised memory until a replay fills them
            raise RuntimeError("cuda_graph has no gradients before its first iteration()")
        _, grad_w1, grad_w2 = self.iteration_out
        return {"w1": to_numpy64(grad_w1), "w2": to_numpy64(grad_w2)}

    def synchronize(self) -> None:
        torch.cuda.synchronize()
