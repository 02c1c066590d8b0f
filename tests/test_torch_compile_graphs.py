"""`torch_compile_graphs` (inductor's CUDA graphs, `mode="reduce-overhead"`), its own logic on the cpu.

On the cpu inductor compiles the same graphs without recording CUDA graphs, so what is checked
here is everything but the replay: the maths (gradients and a 50-iteration trajectory against
`torch_manual` in float64), that the graphs are asked for in reduce-overhead mode, that the
tensors the graphs write into or read on every call are marked static (inductor otherwise runs a
graph with mutated inputs one launch at a time), and that each call begins a new step. The real
replay runs in `.ci/device-check` on a GPU.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_gradients import TOLERANCE, reference_for, relative_error
from test_training import trajectory

import twolayer.variants.torch_compile as torch_compile_module
from twolayer.problem import Problem
from twolayer.variants import VARIANTS, resolve
from twolayer.variants.torch_compile_graphs import MODE, TorchCompileGraphs

SMALL = Problem(n=16, d_in=50, hidden=20, d_out=5, dtype="float64")


def make(problem: Problem = SMALL) -> TorchCompileGraphs:
    return TorchCompileGraphs(resolve("torch_compile_graphs", problem), "cpu")


def test_registered_for_cuda_with_the_phases_a_graph_replays():
    info = VARIANTS["torch_compile_graphs"]
    assert info.devices == ("cuda",) and info.phases == ("forward", "iteration") and info.compiles
    assert (info.optimizer, info.loss_reduction, info.learning_rate) == ("sgd", "sum", 1e-6)


def test_the_graphs_are_compiled_in_reduce_overhead_mode(monkeypatch):
    asked = []
    real = torch.compile

    def recording(function, **options):
        asked.append((function.__name__, options))
        return real(function, **options)

    monkeypatch.setattr(torch_compile_module.torch, "compile", recording)
    make()
    assert sorted(name for name, _ in asked) == ["forward", "iteration"]
    assert all(options["mode"] == MODE == "reduce-overhead" and options["fullgraph"] for _, options in asked)


def test_the_tensors_every_call_reads_or_writes_are_static_addresses():
    variant = make()
    for name in ("x", "y", "w1", "w2"):
        assert getattr(getattr(variant, name), "_dynamo_static_input_type", None), f"{name} is not marked static"


def test_each_call_begins_a_new_step(monkeypatch):
    variant = make()
    steps = []
    real = torch.compiler.cudagraph_mark_step_begin
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: (steps.append(1), real()))
    variant.iteration()
    variant.forward()
    variant.iteration()
    assert len(steps) == 3


def test_gradients_match_the_float64_reference():
    variant = make()
    variant.iteration()
    expected_loss, expected = reference_for("torch_compile_graphs", resolve("torch_compile_graphs", SMALL))
    assert variant.loss() == pytest.approx(expected_loss, rel=1e-10)
    for name, gradient in variant.gradients().items():
        assert relative_error(gradient, expected[name]) < TOLERANCE["float64"], name


def test_trajectory_equals_torch_manual_in_float64():
    variant = make(Problem(dtype="float64"))
    losses = []
    for _ in range(50):
        variant.iteration()
        losses.append(variant.loss())
    reference = trajectory("torch_manual", Problem(dtype="float64"), 50)
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses, reference))
    assert worst < 1e-9, f"torch_compile_graphs drifts from torch_manual by {worst:.2e}"


def test_outputs_of_an_earlier_step_are_not_handed_out():
    """After forward() the last iteration's gradients may already be overwritten by a replay."""
    variant = make()
    with pytest.raises(RuntimeError, match="before its first"):
        variant.loss()
    variant.iteration()
    variant.gradients()
    variant.forward()
    with pytest.raises(RuntimeError, match="right after an iteration"):
        variant.gradients()
    with pytest.raises(NotImplementedError):
        variant.backward()


def test_only_the_first_call_compiles_waits_and_is_costed(monkeypatch):
    """The first call compiles (timed into `compile_seconds`, then synchronised); every later call
    goes straight to the compiled code: no wait for the device, no cost overwritten."""
    clock, syncs, calls = iter(range(100)), [], []
    monkeypatch.setattr(torch_compile_module.torch, "compile", lambda function, **options: function)
    monkeypatch.setattr(torch_compile_module, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    monkeypatch.setattr(torch_compile_module, "synchronize", syncs.append)
    costs = {}
    wrapped = torch_compile_module.CompiledOnFirstCall("forward", lambda a: calls.append(a) or a * 2, "cpu", costs)
    assert [wrapped.call(k) for k in (1, 2, 3)] == [2, 4, 6] and calls == [1, 2, 3]
    assert costs == {"forward": 1.0} and syncs == ["cpu"]
    assert wrapped.call is wrapped.compiled
