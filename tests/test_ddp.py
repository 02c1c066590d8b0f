"""The `ddp` variant (DistributedDataParallel, gloo on the cpu): at world size 2 its gradients after
the all-reduce and its 50-iteration loss trajectory equal `nn_sequential_optim`'s full-batch ones
in float64, to 1e-9. The ranks are processes of their own, joined through a file store in the
test's folder (no port to find)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twolayer.problem import Problem
from twolayer.provenance import PROJECT_ROOT
from twolayer.variants import build, resolve
from twolayer.variants.ddp import leave_world_of_one

PROBLEM = dict(n=16, d_in=50, hidden=20, d_out=5, dtype="float64", seed=4)
ITERATIONS = 50
RANK = r"""
import json, os, sys
import torch.distributed as dist
from twolayer.problem import Problem
from twolayer.variants import resolve
from twolayer.variants.ddp import DDP
store, rank, world, out, scaling = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
variant = DDP(resolve("nn_sequential_optim", Problem(**json.loads(sys.argv[6]))), "cpu", scaling)
from twolayer.variants.ddp import rank_zeros
decided = rank_zeros({"rounds": 100 + rank})  # what rank 0 decides (a round plan), every rank does
variant.forward(); variant.backward()
gradients = {k: v.tolist() for k, v in variant.gradients().items()}
losses = [variant.loss()]
variant.step()
for _ in range(%d - 1):
    variant.forward(); losses.append(variant.loss()); variant.backward(); variant.step()
json.dump({"gradients": gradients, "losses": losses, "decided": decided}, open(out, "w"))
dist.barrier()  # neither rank tears gloo down while the other still talks to it
dist.destroy_process_group()
sys.stdout.flush()
os._exit(0)  # as twolayer.run.rank_pytest ends a rank: a C++ destructor at exit aborts now and then
""" % ITERATIONS


def run_ranks(tmp_path: Path, world: int, scaling: str = "strong") -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    store = tmp_path / "store"
    logs = [open(tmp_path / f"rank{rank}.log", "w") for rank in range(world)]
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, str(store), str(rank), str(world),
                               str(tmp_path / f"rank{rank}.json"), scaling, json.dumps(PROBLEM)], env=env,
                              stdout=logs[rank], stderr=subprocess.STDOUT)
             for rank in range(world)]
    try:
        codes = [rank.wait(timeout=120) for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
        for log in logs:
            log.close()
    assert codes == [0] * world, [(tmp_path / f"rank{rank}.log").read_text()[-2000:] for rank in range(world)]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world)]


def reference() -> tuple[dict, list[float]]:
    variant = build("nn_sequential_optim", resolve("nn_sequential_optim", Problem(**PROBLEM)))
    variant.forward()
    variant.backward()
    gradients = variant.gradients()
    losses = [variant.loss()]
    variant.step()
    for _ in range(ITERATIONS - 1):
        variant.forward()
        losses.append(variant.loss())
        variant.backward()
        variant.step()
    return gradients, losses


@pytest.mark.slow
def test_world_size_two_equals_the_full_batch_in_float64(tmp_path):
    gradients, losses = reference()
    for result in run_ranks(tmp_path, 2):
        for name, expected in gradients.items():
            actual = np.asarray(result["gradients"][name])
            assert np.abs(actual - expected).max() <= 1e-9 * np.abs(expected).max(), name
        worst = max(abs(a - b) / abs(b) for a, b in zip(result["losses"], losses))
        assert worst < 1e-9, f"rank trajectory drifts from nn_sequential_optim by {worst:.2e}"
        assert result["decided"] == {"rounds": 100}


def test_a_world_of_one_is_made_where_none_exists():
    import torch.distributed as dist

    from twolayer.variants.ddp import DDP

    leave_world_of_one()  # one that an earlier test's ddp made in this process (test_phase_calls builds one)
    assert not dist.is_initialized()
    try:
        variant = DDP(resolve("nn_sequential_optim", Problem(**PROBLEM)), "cpu")
        assert dist.get_world_size() == 1 and "gloo" in dist.get_backend()  # with NCCL beside it where a GPU is
        gradients, losses = reference()
        variant.forward()
        assert variant.loss() == pytest.approx(losses[0], rel=1e-12)
        variant.backward()
        for name, expected in gradients.items():
            assert np.allclose(variant.gradients()[name], expected, rtol=1e-12, atol=0)
        del variant  # no DDP may outlive its process group (`leave_world_of_one`)
    finally:
        leave_world_of_one()


def test_strong_scaling_needs_rows_that_split_evenly():
    from twolayer.variants.ddp import shard

    assert shard(np.arange(8), 1, 2).tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="cannot be split evenly across 3 ranks"):
        shard(np.arange(16), 0, 3)


def single_process_gradients(problem: Problem, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The tutorial's hand-written backward of the sum-of-squares loss on rows x, y, in float64."""
    from twolayer.problem import make_weights

    weights = make_weights(problem, init="normal")
    w1, w2 = weights.w1.astype(np.float64), weights.w2.astype(np.float64)
    h = x @ w1
    h_relu = np.maximum(h, 0)
    grad_y_pred = 2 * (h_relu @ w2 - y)
    grad_h = grad_y_pred @ w2.T
    grad_h[h < 0] = 0
    return {"w1": x.T @ grad_h, "w2": h_relu.T @ grad_y_pred}


@pytest.mark.slow
def test_weak_scaling_gives_each_rank_its_own_rows_and_averages_their_gradients(tmp_path):
    from twolayer.variants.ddp import rank_data

    first, second = run_ranks(tmp_path, 2, "weak")
    assert first["losses"][0] != second["losses"][0]  # each rank's own N rows
    problem = resolve("nn_sequential_optim", Problem(**PROBLEM))
    own = [single_process_gradients(problem, *rank_data(problem, rank)) for rank in range(2)]
    for name in ("w1", "w2"):  # after the all-reduce every rank steps with the mean of the ranks' own gradients
        assert np.array_equal(np.asarray(first["gradients"][name]), np.asarray(second["gradients"][name]))
        expected = (own[0][name] + own[1][name]) / 2
        actual = np.asarray(first["gradients"][name])
        assert np.abs(actual - expected).max() <= 1e-9 * np.abs(expected).max(), name
