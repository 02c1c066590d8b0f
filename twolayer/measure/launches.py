"""Kernel launches per call on cuda, and the launch floor they put under a phase.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.measure.launches".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from twolayer.measure.phases import PhaseCall

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


def profiled(call: PhaseCall, device: str):
    """One call of the phase under the profiler (cpu, and cuda's activities on cuda), its setup
    outside it and the device's queue empty at both ends; the profiler's record."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    if call.setup is not None:
        call.setup()
    if device == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities) as recorded:
        call.target()
        if device == "cuda":
            torch.cuda.synchronize()
    return recorded


def activity_of(event) -> str:
    """The kineto activity type of a profiler event ("kernel", "gpu_memcpy", "cpu_op", ...). Torch
    before 2.12 has no `activity_type()`: there an event on the cuda device that is not a user
    annotation is device work, counted as a kernel."""
    if hasattr(event, "activity_type"):
        return event.activity_type()
    from torch.autograd import DeviceType  # torch is imported wherever there are events to read

    on_device = event.device_type() == DeviceType.CUDA
    annotation = getattr(event, "is_user_annotation", lambda: False)()
    return "kernel" if on_device and not annotation else "host"


def tally_of(recorded) -> LaunchCount:
    return tally((e.name(), activity_of(e), e.duration_ns()) for e in recorded.profiler.kineto_results.events())


def count_launches(call: PhaseCall, device: str) -> LaunchCount:
    """One call of the phase under the profiler, its setup outside it."""
    return tally_of(profiled(call, device))


def profiler_sees_launches() -> str | None:
    """None when the profiler records cuda launches and kernels here (CUPTI works), else why not:
    one empty kernel launched under it must show as one launch and one kernel."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        torch.cuda._sleep(0)  # the first launch of a kind loads its module: outside the record
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as recorded:
            torch.cuda._sleep(0)
            torch.cuda.synchronize()
        seen = tally_of(recorded)
    except RuntimeError as error:  # the profiler could not start (CUPTI absent or refused)
        return f"the profiler cannot record cuda here ({str(error).splitlines()[0] if str(error) else error!r})"
    if seen.kernel_launches < 1 or seen.kernels < 1:
        return (f"the profiler saw {seen.kernel_launches} launches and {seen.kernels} kernels of one empty kernel "
                "(no CUPTI activity): launches not counted; aten_ops stands in")
    return None


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
