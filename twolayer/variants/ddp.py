"""Beyond the tutorial: 方案七 (`nn.Sequential` without bias, `MSELoss(reduction='sum')`, SGD) wrapped in
`torch.nn.parallel.DistributedDataParallel`, one process per rank.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.variants.ddp".
"""

from __future__ import annotations

import functools
import os
from datetime import timedelta
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from twolayer.devices import synchronize, torch_dtype
from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants.tensors import load_linear, to_numpy64, to_tensor

Scaling = Literal["strong", "weak"]


def backend_for(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


DEFAULT_COLLECTIVE_TIMEOUT_S = 60.0  # a rank that died or hung fails the others' collectives after this


def world_backend(device: str) -> str:
    """One group for both devices where a GPU is (gloo for cpu tensors, NCCL for cuda ones), so
    that ddp on cuda and on cpu can follow each other in one process, in either order."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return backend_for(device)


def ensure_process_group(device: str) -> None:
    """A world of one in this process where no process group exists yet."""
    if not dist.is_initialized():
        dist.init_process_group(world_backend(device), store=dist.HashStore(), rank=0, world_size=1)


def leave_world_of_one() -> None:
    """Take down the world of one `ensure_process_group` made, once no DDP is left: a DDP freed
    after its group was destroyed holds the group's last reference, and gloo's destructor then
    joins its threads, now and then forever (seen once in the full test suite). So the caller
    drops its DDPs first, and unreachable ones are collected here."""
    import gc

    gc.collect()
    if dist.is_initialized() and dist.get_world_size() == 1:
        dist.destroy_process_group()


def launched_world_size() -> int:
    """The world size `torchrun` (or `twolayer run --world-size`) gave this process; 1 when none."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join_from_environment(devices: set[str], timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> None:
    """Join the job `torchrun` describes in the environment (`MASTER_ADDR`, `RANK`, `WORLD_SIZE`, ...),
    gloo for cpu tensors and NCCL for cuda ones; a collective that waits longer than `timeout_s` for
    a peer fails (a rank that died or hung), rather than hanging the job."""
    if dist.is_initialized() or "RANK" not in os.environ:
        return
    backend = world_backend("cuda") if "cuda" in devices else "gloo"
    if "cuda" in devices:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1))
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))


def rank_threads(cores: int | None = None) -> int:
    """Threads per rank by default: the cores divided among the ranks on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (cores or os.cpu_count() or 1) // local)


def rank_zeros(value):
    """Rank 0's `value` on every rank (a collective): what rank 0 decides, every rank does."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@functools.cache
def solo_group() -> object:
    """A process group of this rank alone (made, collectively, once per process: every rank must
    ask for it at the same point of the benchmark sequence)."""
    own, _ = dist.new_subgroups(group_size=1)
    return own


def shard(rows: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    n = len(rows)
    if n % world_size:
        raise ValueError(f"N={n} rows cannot be split evenly across {world_size} ranks (strong scaling)")
    per_rank = n // world_size
    return rows[rank * per_rank:(rank + 1) * per_rank]


def rank_data(problem: Problem, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Weak scaling: N rows of a rank's own, from a stream seeded with the rank too."""
    rng = np.random.default_rng([problem.seed, 0, rank + 1])
    dtype = np.dtype(problem.dtype)
    return (rng.standard_normal((problem.n, problem.d_in)).astype(dtype),
            rng.standard_normal((problem.n, problem.d_out)).astype(dtype))


class DDP:
    def __init__(self, problem: Problem, device: str = "cpu", scaling: Scaling = "strong", group=None,
                 shard_of: tuple[int, int] | None = None) -> None:
        """`group`: the process group DDP all-reduces over (the default one when None); `shard_of`:
        (rank, world size) whose rows to take, when they are not the group's own (the solo twin)."""
        if scaling not in ("strong", "weak"):
            raise ValueError(f"scaling must be strong or weak, got {scaling!r}")
        ensure_process_group(device)
        self.device, self.scaling, self.group = device, scaling, group
        self.rank, self.world_size = shard_of or (dist.get_rank(group), dist.get_world_size(group))
        self.group_size = dist.get_world_size(group)
        if scaling == "strong":
            data = make_data(problem)
            x, y = shard(data.x, self.rank, self.world_size), shard(data.y, self.rank, self.world_size)
        else:
            x, y = rank_data(problem, self.rank)
        weights = make_weights(problem, init="normal")  # the same initial weights on every rank
        self.x, self.y = to_tensor(x, device), to_tensor(y, device)
        model = nn.Sequential(
            nn.Linear(problem.d_in, problem.hidden, bias=False),
            nn.ReLU(),
            nn.Linear(problem.hidden, problem.d_out, bias=False),
        ).to(device=device, dtype=torch_dtype(problem.dtype))
        load_linear(model[0], weights.w1)
        load_linear(model[2], weights.w2)
        self.model = DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None,
                                             process_group=group)
        self.loss_fn = nn.MSELoss(reduction="sum")
        # DDP averages over the ranks; a sum over the global batch needs the ranks' sum
        self.loss_scale = float(self.world_size) if scaling == "strong" else 1.0
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=problem.learning_rate)

    def forward(self) -> None:
        y_pred = self.model(self.x)
        self._shard_loss = self.loss_fn(y_pred, self.y)
        self._loss = self._shard_loss * self.loss_scale

    def backward(self) -> None:
        self._loss.backward()  # DDP's hooks all-reduce the gradients as they are produced

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()

    def loss(self) -> float:
        """The loss of the whole batch (strong) or of this rank's (weak): a collective, so every
        rank must call it."""
        total = self._shard_loss.detach().clone()
        if self.scaling == "strong" and self.group_size > 1:
            dist.all_reduce(total, group=self.group)
        return total.item()

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients after the all-reduce: every rank holds the same."""
        module = self.model.module
        return {"w1": to_numpy64(module[0].weight.grad).T, "w2": to_numpy64(module[2].weight.grad).T}

    def synchronize(self) -> None:
        synchronize(self.device)
