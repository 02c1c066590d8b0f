"""The process that `twolayer count` runs its benchmarks in: once natively for the dispatched ops
and bytes allocated, once under Valgrind's callgrind for the instructions.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.count.worker".
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from twolayer.schema import EMPTY  # a constant: no torch before the thread variables are set

ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
MODES = ("ops", "instructions")


def counted_cases(plan: dict) -> list:
    from twolayer.cases import plan_cases  # after the one-thread environment is set

    cases = plan_cases(plan.get("variants"), plan.get("devices"), plan.get("phases"), plan.get("dtypes"),
                       plan.get("sizes"), quick=bool(plan.get("quick")))
    return [case for case in cases if case.skip_reason is None]


def prepared(case, warmup: int):
    """The benchmark's phase call, built and warmed up as `twolayer run` builds it."""
    from twolayer.measure.phases import phase_call  # after the one-thread environment is set
    from twolayer.variants import build

    call = phase_call(build(case.variant, case.problem, case.device), case.phase)
    for _ in range(warmup):
        if call.setup is not None:
            call.setup()
        call.target()
    return call


def count_instructions(plan: dict) -> dict:
    """Runs under callgrind: one dump per benchmark, in `order`."""
    import torch  # after the one-thread environment is set

    if not torch._C._valgrind_supported_platform():
        raise SystemExit("count_worker: this torch build has no callgrind client requests")
    calls, warmup = int(plan["calls"]), int(plan["warmup"])
    order = []
    jobs = [(EMPTY, device, lambda: None, None) for device in sorted({c.device for c in counted_cases(plan)})]
    seconds = {}  # wall time under Valgrind per benchmark, building and warm-up included: where the time went
    for case in counted_cases(plan):
        started = time.perf_counter()
        call = prepared(case, warmup)
        # on cuda the phase's work without its final synchronisation (`PhaseCall.work`): a host
        # waiting for the device spins for as long as the device runs, a count that would not repeat
        counted = (call.work or call.target) if case.device == "cuda" else call.target
        jobs.append((case.id, case.device, counted, call.setup))
        seconds[case.id] = time.perf_counter() - started
    for name, device, target, setup in jobs:
        started = time.perf_counter()
        for index in range(calls):
            if setup is not None:
                setup()
            if device == "cuda":
                # the queue empty before each counted call: a launch into a full queue waits, and
                # a waiting host executes a varying number of instructions. Nothing inside the
                # counted region waits for the device.
                torch.cuda.synchronize()
            torch._C._valgrind_toggle()  # on
            target()
            if index < calls - 1:
                torch._C._valgrind_toggle()  # off
            else:
                torch._C._valgrind_toggle_and_dump_stats()  # off, and this benchmark's dump
        order.append({"id": name, "device": device})
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
    return {"order": order, "calls": calls, "threads": torch.get_num_threads(), "seconds": seconds}


class OpCounter:
    """Counts the aten operators dispatched while it is active (a `TorchDispatchMode`)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode  # after the one-thread environment is set

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.count += 1
                return func(*args, **(kwargs or {}))

        self.count = 0
        self.mode = Mode


def dispatched_ops(call) -> int:
    """The aten operators one call of the phase dispatches, its setup run first, outside the count."""
    if call.setup is not None:
        call.setup()
    counter = OpCounter()
    with counter.mode():
        call.target()
    return counter.count


COUNTED = "twolayer.counted."  # the profiler annotation of the n-th counted call: COUNTED + str(n)


def peak_bytes(memory_events: list[tuple[int, int]]) -> int:
    """The largest running total of (time, bytes) allocator events, allocations positive and frees
    negative, in the order they happened: the most a call held at once beyond its start."""
    total = peak = 0
    for _, nbytes in sorted(memory_events, key=lambda event: event[0]):
        total += nbytes
        peak = max(peak, total)
    return peak


def counted_windows(raw_events) -> list[tuple[int, int]]:
    """(start, end) in ns of each counted call's annotation, in the order of the calls."""
    windows = {int(e.name()[len(COUNTED):]): (e.start_ns(), e.end_ns()) for e in raw_events
               if e.name().startswith(COUNTED)}
    return [windows[index] for index in sorted(windows)]


def torch_peak_bytes_per_call(raw_events) -> list[int]:
    """Per counted call, the peak of the CPU allocator's memory events inside its window. The raw
    (kineto) events carry every allocation; the profiler's aggregated `events()` fold those made
    inside an operator into the operator and keep only the frees as `[memory]` events."""
    from torch._C._autograd import DeviceType  # after the one-thread environment is set

    memory = [(e.start_ns(), e.nbytes()) for e in raw_events
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    return [peak_bytes([event for event in memory if start <= event[0] <= end])
            for start, end in counted_windows(raw_events)]


def top_level_aten_ops(events, within: str | None = None) -> int:
    """The aten operators the profiler saw called from outside any other aten operator (inside the
    annotation `within`, if given). A compiled graph refuses a dispatch mode (dynamo then skips
    the frame for good), so for `torch.compile` this stands in: the operators its generated code
    calls out to (`mm` for inductor's extern kernels); its fused kernels are not aten operators.
    The profiler sees composite operators whole (`linear` is one op, not `t` and `mm`), so the two
    counts differ for eager variants."""
    count = 0
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent, inside = event.cpu_parent, within is None
        while parent is not None and not parent.name.startswith("aten::"):
            inside = inside or parent.name == within
            parent = parent.cpu_parent
        count += parent is None and inside
    return count


def count_torch_on_cpu(case, calls: int, warmup: int, compiled: bool) -> dict:
    """Aten ops and bytes per counted call of a torch benchmark on the cpu.

    The profiler learns a CPU block's size when the block is allocated while it records memory,
    and reports a free only for a block it knows; a block freed while it does not record keeps
    its stale entry, which a later block at the same address inherits. So a call's frees (of the
    previous call's outputs, above all) were seen or not by the history of the process's
    addresses, and the figure moved between processes (torch_manual's forward: 25-58 KiB). Here
    everything a counted call can free is allocated in the recording (one call before the counted
    ones), and the benchmark is let go inside it: every free is seen, in every process."""
    import gc  # after the one-thread environment is set

    from torch.profiler import ProfilerActivity, profile, record_function  # after the one-thread environment is set

    call = prepared(case, warmup)
    # outside the recording: a dispatch mode and the profiler are kept apart
    ops = [] if compiled else [dispatched_ops(call) for _ in range(calls)]
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        for index in range(-1, calls):  # call -1: what the counted calls free is allocated here
            if call.setup is not None:
                call.setup()
            if index < 0:
                call.target()
                continue
            with record_function(f"{COUNTED}{index}"):
                call.target()
        del call
        gc.collect()
    peaks = torch_peak_bytes_per_call(recorded.profiler.kineto_results.events())
    if len(peaks) != calls:
        raise SystemExit(f"count_worker: {case.id}: the profiler kept {len(peaks)} of the {calls} counted calls' marks")
    if compiled:
        events = recorded.events()
        ops = [top_level_aten_ops(events, within=f"{COUNTED}{index}") for index in range(calls)]
    return {"aten_ops": ops, "alloc_bytes": peaks}


def numpy_peak_bytes(call, calls: int) -> list[int]:
    """Per counted call, `tracemalloc`'s peak beyond the call's start. Traced from one call before
    the counted ones, so that the frees of what an earlier call left are counted too, as for torch.
    Python's own small objects are traced as well: the first counted call may hold a few bytes more
    than the rest (numpy_manual's iteration: 32), the same in every process."""
    import tracemalloc  # after the one-thread environment is set

    peaks = []
    tracemalloc.start()
    try:
        for index in range(-1, calls):
            if call.setup is not None:
                call.setup()
            start, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            call.target()
            _, peak = tracemalloc.get_traced_memory()
            if index >= 0:
                peaks.append(max(peak - start, 0))
    finally:
        tracemalloc.stop()
    return peaks


def count_on_cuda(call, compiled: bool, launches_seen: bool) -> dict:
    """One counted call on cuda, in three calls of it (each with its setup): the dispatched aten
    ops (a compiled graph's: the profiler's), the device memory peak, and what the host launched."""
    from twolayer.measure.device_memory import phase_peak_bytes  # after the one-thread environment is set
    from twolayer.measure.launches import profiled, tally_of

    counted = {"alloc_bytes": phase_peak_bytes(call)}
    if not compiled:
        counted["aten_ops"] = dispatched_ops(call)
    if compiled or launches_seen:
        recorded = profiled(call, "cuda" if launches_seen else "cpu")  # cuda's activities only where CUPTI works
        if compiled:
            counted["aten_ops"] = top_level_aten_ops(recorded.events())
        if launches_seen:
            launched = tally_of(recorded)
            counted.update(launches=launched.kernel_launches, gpu_kernels=launched.kernels)
    return counted


def count_ops(plan: dict) -> dict:
    """The native counts of a plan's benchmarks, by case id: aten ops and bytes allocated per counted call
    and, on cuda, launches and kernels; with the note of why launches are not counted where the profiler
    cannot see them."""
    import torch  # after the one-thread environment is set

    from twolayer.measure.launches import profiler_sees_launches  # after the one-thread environment is set
    from twolayer.variants import VARIANTS

    calls, warmup = int(plan["calls"]), int(plan["warmup"])
    counts = {}
    cases = counted_cases(plan)
    launches_wanted = bool({"launches", "gpu_kernels"} & set(plan.get("metrics") or ("launches",)))
    on_cuda = any(case.device == "cuda" for case in cases)
    launches_note = profiler_sees_launches() if on_cuda and launches_wanted else None
    for case in cases:
        library, compiled = VARIANTS[case.variant].library, VARIANTS[case.variant].compiles
        if case.device == "cuda" and library == "torch":
            call = prepared(case, warmup)
            each = [count_on_cuda(call, compiled, launches_wanted and launches_note is None) for _ in range(calls)]
            counted = {metric: [counted[metric] for counted in each] if metric in each[0] else None
                       for metric in ("aten_ops", "alloc_bytes", "launches", "gpu_kernels")}
        elif case.device == "cuda":  # jax on cuda: its buffers are XLA's, which neither counter sees
            counted = {"aten_ops": None, "alloc_bytes": None}
        elif library == "torch":  # built, and let go inside the recording, there
            counted = count_torch_on_cpu(case, calls, warmup, compiled)
        else:
            counted = {"aten_ops": None, "alloc_bytes": numpy_peak_bytes(prepared(case, warmup), calls)}
        counts[case.id] = {**counted,
                           "ops_counted_by": None if library != "torch" else "profiler" if compiled else "dispatch_mode"}
    return {"counts": counts, "calls": calls, "threads": torch.get_num_threads(), "launches_note": launches_note}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in MODES:
        print(f"usage: python -m twolayer.count.worker {{{','.join(MODES)}}} PLAN.json OUT.json", file=sys.stderr)
        return 2
    os.environ.update(ONE_THREAD)  # before numpy or torch loads its thread pools
    started = time.perf_counter()
    import torch  # after the one-thread environment is set

    from twolayer.chatter import quiet_library_chatter  # after the one-thread environment is set

    quiet_library_chatter()
    torch.set_num_threads(1)
    plan = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    imported = time.perf_counter() - started
    result = count_instructions(plan) if argv[0] == "instructions" else count_ops(plan)
    result["import_seconds"] = imported
    Path(argv[2]).write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
