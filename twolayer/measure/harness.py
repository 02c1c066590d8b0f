"""What every benchmark body does around its timed call: record what ran, time it, check the loss."""

from __future__ import annotations

import math
import time

import pytest
import torch

from twolayer import SUITE_VERSION
from twolayer.cases import BenchCase
from twolayer.devices import device_name
from twolayer.measure.canary import canary_seconds, machine_load
from twolayer.measure.device_memory import phase_peak_bytes
from twolayer.measure.device_time import cuda_stream, device_rounds
from twolayer.measure.launches import count_launches
from twolayer.measure.phases import PhaseCall
from twolayer.measure.timing import Budget, RoundPlan, plan_rounds
from twolayer.provenance import numpy_threads
from twolayer.schema import CASE_FIELDS
from twolayer.variants.ddp import rank_zeros


def record(benchmark, *, variant: str, phase: str, device: str, dtype: str | None, case: BenchCase | None,
           pass_index: int = 0) -> None:
    """Everything needed to read the result later without the test id: what ran, where, how big."""
    problem = case.problem if case else None
    benchmark.group = case.group if case else f"{device} overhead"
    fields = {
        "suite_version": SUITE_VERSION,
        "variant": variant,
        "phase": phase,
        "device": device,
        "device_name": device_name(device),
        "dtype": dtype,
        "dtype_mode": case.dtype_mode if case else None,
        "n": problem.n if problem else None,
        "d_in": problem.d_in if problem else None,
        "hidden": problem.hidden if problem else None,
        "d_out": problem.d_out if problem else None,
        "size": problem.size_label if problem else None,
        "learning_rate": problem.learning_rate if problem else None,
        "flops": case.flops() if case else 0,
        "torch_threads": torch.get_num_threads(),
        "numpy_threads": numpy_threads(),
        "pass": pass_index,  # 1..K under `--repeat K`; 0 in a single pass
        "world_size": case.world_size if case else 1,  # ranks (a distributed variant's); 1 for the others
        "scaling": case.scaling if case else "",  # strong or weak (a distributed variant's)
    }
    if tuple(fields) != CASE_FIELDS:  # the record and its declaration (twolayer.schema) move together
        raise AssertionError(f"the harness writes {tuple(fields)}, twolayer.schema declares {CASE_FIELDS}")
    benchmark.extra_info.update(fields)


def time_call(benchmark, call: PhaseCall, budget: Budget, device: str = "cpu", torch_work: bool = True
              ) -> RoundPlan | None:
    """Time `call` with pytest-benchmark: one call per round, setup untimed before each. Returns the
    round plan handed to pytest-benchmark; None where timing is disabled (plain `pytest`), which
    runs the call once, untimed. On cuda, the device's own figures follow the timed rounds, for
    torch's work only: jax runs on streams and an allocator that torch's events and memory
    counters do not see, so they would record a false zero."""
    if benchmark.disabled:
        benchmark.pedantic(call.target, setup=call.setup)
        return None
    plan = rank_zeros(plan_rounds(call, budget))  # distributed: every rank times rank 0's plan, or they hang
    benchmark.extra_info["warmup_rounds"] = plan.warmup_rounds
    benchmark.extra_info.update(machine_load(samples=3, interval_s=0.005))  # contention, for the reader
    benchmark.extra_info["canary_before_s"] = canary_seconds()
    benchmark.pedantic(call.target, setup=call.setup, rounds=plan.rounds, warmup_rounds=plan.warmup_rounds)
    benchmark.extra_info["canary_after_s"] = canary_seconds()
    if device == "cuda" and torch_work:
        record_device_figures(benchmark, call, plan, device)
    return plan


def record_device_figures(benchmark, call: PhaseCall, plan: RoundPlan, device: str, stream=None, cuda=None) -> None:
    """After the wall-clock rounds, never inside them: CUDA-event spans of the phase's work in rounds
    of their own (`device_s`), one profiled call (`kernel_launches`, `kernels`, `device_busy_s`)
    and one call for the memory peak (`peak_bytes`). `stream` and `cuda` are for tests."""
    info = benchmark.extra_info
    info["device_s"] = device_rounds(call, plan.rounds, plan.probe_round_s, stream or cuda_stream())
    counted = count_launches(call, device)
    info.update(kernel_launches=counted.kernel_launches, kernels=counted.kernels, device_busy_s=counted.device_busy_s)
    info["peak_bytes"] = phase_peak_bytes(call, cuda)


def time_solo(benchmark, solo_call: PhaseCall, plan: RoundPlan, clock=time.perf_counter) -> None:
    """`solo_s`: the same phase of a rank's solo twin (the same rows, DDP over this rank alone),
    timed round by round with the plan the benchmark had, setup untimed. Every rank times its twin
    at once, so the machine is as busy as in the benchmark's rounds; what the benchmark's median
    has over the twin's is the cost of having peers (`comm_s` in the reports)."""
    for _ in range(plan.warmup_rounds):
        if solo_call.setup is not None:
            solo_call.setup()
        solo_call.target()
    spans = []
    for _ in range(plan.rounds):
        if solo_call.setup is not None:
            solo_call.setup()
        start = clock()
        solo_call.target()
        spans.append(clock() - start)
    benchmark.extra_info["solo_s"] = [round(span, 9) for span in spans]


def check_finite(loss: float, case: BenchCase) -> None:
    if not math.isfinite(loss):
        pytest.fail(f"{case.id}: loss became {loss} while timing; the timings would be of NaN arithmetic")
