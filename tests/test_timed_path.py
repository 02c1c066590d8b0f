"""The timed path as it really runs under `twolayer run`, not the `--benchmark-disable` shortcut
that plain `pytest` takes.

A fake `benchmark` records what the harness hands pytest-benchmark (target, setup, rounds,
warm-up) and runs the target a few times with every host sync made to raise: `.item()`,
`float()` and `bool()` of a tensor (all of which reach ATen's `_local_scalar_dense`), `.tolist()`,
`.numpy()` and `.cpu()`. Planning and the canary are scripted, so that nothing here depends on
real time.
"""

from __future__ import annotations

import contextlib
import os
import traceback

import pytest
import test_phases as bench_phases  # noqa: E402
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from twolayer.cases import plan_cases
from twolayer.measure import harness  # noqa: E402
from twolayer.measure.phases import PhaseCall, phase_call
from twolayer.measure.timing import Budget, RoundPlan
from twolayer.problem import Problem
from twolayer.variants import VARIANTS, build

PLAN = RoundPlan(rounds=7, warmup_rounds=3, probe_round_s=1e-3)
HOST_SYNC_OPS = {"_local_scalar_dense", "nonzero", "_assert_async"}


class HostSync(AssertionError):
    pass


def inside_torch_optim() -> bool:
    """Adam reads its step counter, a CPU scalar by design (not capturable), with `.item()`: the
    optimiser's own bookkeeping, the same in every training loop, not a sync the harness added."""
    return any(f"torch{os.sep}optim{os.sep}" in frame.filename for frame in traceback.extract_stack())


class RefuseHostSyncs(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in HOST_SYNC_OPS and not inside_torch_optim():
            raise HostSync(f"{func} in a timed call: it waits for the device and copies to the host")
        return func(*args, **(kwargs or {}))


REFUSED_METHODS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__")


@contextlib.contextmanager
def no_host_syncs(dispatch: bool = True):
    """Every host sync or host copy of a tensor raises `HostSync` inside: the Tensor methods that
    make one, and (with `dispatch`) the ATen ops they reach. Dynamo compiles nothing while a
    dispatch mode is active, so a compiled variant is guarded by the methods alone; a sync inside
    its graph would break the graph, which its `fullgraph=True` refuses anyway."""
    saved = {name: getattr(torch.Tensor, name) for name in REFUSED_METHODS}
    own = {name for name in REFUSED_METHODS if name in vars(torch.Tensor)}  # the rest are TensorBase's

    def refuse(name):
        def refused(self, *args, **kwargs):
            if inside_torch_optim():
                return saved[name](self, *args, **kwargs)
            raise HostSync(f"Tensor.{name}() in a timed call: a host sync or copy")
        return refused

    try:
        for name in saved:
            setattr(torch.Tensor, name, refuse(name))
        with RefuseHostSyncs() if dispatch else contextlib.nullcontext():
            yield
    finally:
        for name, method in saved.items():
            if name in own:
                setattr(torch.Tensor, name, method)
            else:
                delattr(torch.Tensor, name)


class FakeBenchmark:
    """What pytest-benchmark's fixture offers the body; `pedantic` records what it was handed and
    runs setup then target (the target under `no_host_syncs`) for two rounds."""

    disabled = False

    def __init__(self, events: list):
        self.events, self.extra_info, self.group, self.handed = events, {}, None, None

    def pedantic(self, target, setup=None, rounds=1, warmup_rounds=0, iterations=1, args=(), kwargs=None):
        self.handed = {"target": target, "setup": setup, "rounds": rounds, "warmup_rounds": warmup_rounds,
                       "iterations": iterations}
        self.events.append("pedantic")
        for _ in range(2):
            if setup is not None:
                setup()
            with no_host_syncs():
                target()


@pytest.fixture
def scripted(monkeypatch):
    """The harness with its planning, canary and load probe scripted; returns the event log."""
    events = []
    canaries = iter([100e-6, 130e-6, 101e-6, 131e-6])

    def plan(call, budget, *args, **kwargs):
        events.append("plan")
        return PLAN

    def canary():
        value = next(canaries)
        events.append(("canary", value))
        return value

    monkeypatch.setattr(harness, "plan_rounds", plan)
    monkeypatch.setattr(harness, "canary_seconds", canary)
    monkeypatch.setattr(harness, "machine_load", lambda **kwargs: {"load_avg_1m": 0.25, "others_running": 1})
    return events


def test_time_call_hands_pytest_benchmark_the_call_and_the_plan_with_canaries_around_it(scripted):
    runs = []
    call = PhaseCall(lambda: runs.append("target"), lambda: runs.append("setup"))
    benchmark = FakeBenchmark(scripted)
    harness.time_call(benchmark, call, Budget())
    assert benchmark.handed == {"target": call.target, "setup": call.setup, "rounds": PLAN.rounds,
                                "warmup_rounds": PLAN.warmup_rounds, "iterations": 1}
    assert scripted == ["plan", ("canary", 100e-6), "pedantic", ("canary", 130e-6)]
    assert benchmark.extra_info == {"warmup_rounds": PLAN.warmup_rounds, "load_avg_1m": 0.25, "others_running": 1,
                                    "canary_before_s": 100e-6, "canary_after_s": 130e-6}
    assert runs == ["setup", "target"] * 2


def test_with_timing_disabled_the_call_runs_once_untimed(scripted):
    runs = []
    benchmark = FakeBenchmark(scripted)
    benchmark.disabled = True
    harness.time_call(benchmark, PhaseCall(lambda: runs.append("target"), None), Budget())
    assert "plan" not in scripted and not any(isinstance(e, tuple) for e in scripted)
    assert benchmark.handed["rounds"] == 1 and "canary_before_s" not in benchmark.extra_info


@pytest.mark.parametrize("variant, phase", [("torch_manual", "forward"), ("numpy_manual", "step"),
                                            ("module_params", "backward"), ("torch_autograd", "iteration")])
def test_the_benchmark_body_times_only_its_phase_and_records_what_it_timed(scripted, variant, phase):
    """bench/test_phases.py's own body, run as `twolayer run` runs it."""
    [case] = plan_cases(variant, "cpu", phase, None, None)
    benchmark = FakeBenchmark(scripted)
    bench_phases.test_phase(benchmark, case, Budget(), 2)
    assert scripted == ["plan", ("canary", 100e-6), "pedantic", ("canary", 130e-6)]
    assert benchmark.handed["rounds"] == PLAN.rounds and benchmark.handed["warmup_rounds"] == PLAN.warmup_rounds
    info = benchmark.extra_info
    assert (info["variant"], info["phase"], info["device"], info["dtype"], info["pass"]) == \
        (variant, phase, "cpu", case.dtype, 2)
    assert info["flops"] == case.flops() and info["warmup_rounds"] == PLAN.warmup_rounds
    assert (info["canary_before_s"], info["canary_after_s"]) == (100e-6, 130e-6)
    assert info["torch_threads"] == torch.get_num_threads()
    assert benchmark.group == case.group


def test_the_thread_counts_recorded_are_each_librarys_own(scripted):
    """torch's and numpy's BLAS pools set apart (1 and 3 threads): each field reads its own."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    [case] = plan_cases("numpy_manual", "cpu", "forward", None, None)
    benchmark = FakeBenchmark(scripted)
    before = torch.get_num_threads()
    try:
        with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
            torch.set_num_threads(1)
            bench_phases.test_phase(benchmark, case, Budget(), 0)
    finally:
        torch.set_num_threads(before)
    assert (benchmark.extra_info["torch_threads"], benchmark.extra_info["numpy_threads"]) == (1, 3)


CPU_CASES = [(name, phase) for name, info in VARIANTS.items()
             if "cpu" in info.devices and info.absent_reason is None for phase in info.phases]


@pytest.mark.parametrize("name, phase", CPU_CASES)
def test_no_timed_call_syncs_the_host(name, phase):
    """Every CPU variant and phase: its untimed setup may sync, its timed target may not."""
    call = phase_call(build(name, Problem(seed=5), "cpu"), phase)
    for guarded in (False, True, True):  # a first round unguarded: a compiling variant compiles in it
        if call.setup is not None:
            call.setup()
        with no_host_syncs(dispatch=not VARIANTS[name].compiles) if guarded else contextlib.nullcontext():
            call.target()


@pytest.mark.parametrize("impure", [lambda t: t.sum().item(), lambda t: float(t.sum()), lambda t: bool(t.max() > 0),
                                    lambda t: t.tolist(), lambda t: t.numpy(), lambda t: t.cpu()])
@pytest.mark.parametrize("dispatch", [True, False])
def test_the_guard_catches_each_kind_of_host_sync(impure, dispatch):
    tensor = torch.ones(3)
    impure(tensor)  # allowed outside
    with pytest.raises(HostSync), no_host_syncs(dispatch):
        impure(tensor)
    impure(tensor)  # and restored after


def test_a_host_sync_in_the_benchmark_body_fails(scripted, monkeypatch):
    """Mirror of the purity test: a body that reads the loss inside the timed call is caught."""
    real = bench_phases.phase_call

    def with_a_sync(variant, phase):
        call = real(variant, phase)
        return PhaseCall(lambda: (call.target(), variant.loss()), call.setup)

    monkeypatch.setattr(bench_phases, "phase_call", with_a_sync)
    [case] = plan_cases("torch_manual", "cpu", "forward", None, None)
    with pytest.raises(HostSync):
        bench_phases.test_phase(FakeBenchmark(scripted), case, Budget(), 0)
