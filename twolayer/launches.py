"""Kernel launches per call on cuda, and the launch floor they put under a phase.

At the tutorial's size a GPU finishes each kernel in a few microseconds, so an eager phase costs
what its launches cost, not what its FLOPs cost. Two harness rows time that cost on the device
(`bench/test_overhead.py`):

    harness_launch   an empty kernel (`torch.cuda._sleep(0)`) launched, then a synchronisation
    harness_graph    a CUDA graph of that one kernel replayed, then a synchronisation

and one profiled call per benchmark (after its timed rounds) counts what the phase launches:

    kernel_launches  the host's calls that put work on the device: kernel launches (runtime and
                     driver API, Triton's included), graph launches, async copies and memsets
    kernels          the device activities they made: kernels, copies, memsets (a graph
                     launch is one host call and several kernels)
    device_busy_s    the sum of those activities' durations, from the profiler

    launch_floor_s = harness_sync + kernel_launches * (harness_launch - harness_sync)

the time a phase could not beat with free kernels: each launch's host cost and latency, plus one
synchronisation. The matmul peak (`floor_s`) is the other floor; at this size the launch floor is
the higher one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from twolayer.phases import PhaseCall

# Host calls that queue device work (CUDA runtime and driver API names, as the profiler reports them).
LAUNCH_PREFIXES = ("cudaLaunch", "cuLaunch", "cudaGraphLaunch", "cuGraphLaunch")
LAUNCH_CALLS = frozenset({"cudaMemcpyAsync", "cudaMemsetAsync", "cuMemcpyAsync", "cuMemsetD8Async",
                          "cuMemsetD32Async", "cudaMemcpy2DAsync"})
# The profiler's (kineto's) activity types of work on the device.
DEVICE_ACTIVITIES = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})


@dataclass(frozen=True)
class LaunchCount:
    kernel_launches: int
    kernels: int
    device_busy_s: float


def is_launch(name: str) -> bool:
    return name.startswith(LAUNCH_PREFIXES) or name in LAUNCH_CALLS


def tally(events: Iterable[tuple[str, str, int]]) -> LaunchCount:
    """Launches, device activities and their total duration, from (name, activity type, duration
    in ns) of each profiler event."""
    launches = kernels = busy_ns = 0
    for name, activity, duration_ns in events:
        if activity in DEVICE_ACTIVITIES:
            kernels += 1
            busy_ns += max(duration_ns, 0)
        elif is_launch(name):
            launches += 1
    return LaunchCount(launches, kernels, busy_ns / 1e9)


def count_launches(call: PhaseCall, device: str) -> LaunchCount:
    """One call of the phase under the profiler, its setup outside it."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    if call.setup is not None:
        call.setup()
    with profile(activities=activities) as recorded:
        call.target()
    return tally((e.name(), e.activity_type(), e.duration_ns()) for e in recorded.profiler.kineto_results.events())


def launch_floor_s(kernel_launches: float, launch_s: float, sync_s: float) -> float:
    """One synchronisation plus each launch's own cost (an empty launch and sync, less the sync)."""
    return sync_s + kernel_launches * max(launch_s - sync_s, 0.0)


def empty_launch() -> Callable[[], None]:
    import torch

    return lambda: torch.cuda._sleep(0)


def one_kernel_graph() -> Callable[[], None]:
    """The replay of a CUDA graph holding one empty kernel (captured once, warmed up on a side
    stream as PyTorch documents)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(0)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        torch.cuda._sleep(0)
    torch.cuda.synchronize()
    return graph.replay
