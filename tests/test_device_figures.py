"""What a cuda benchmark records beside its wall time, tested on the cpu with a scripted device.

`ScriptedDevice` is a stream in miniature: the host pays `launch_s` per launch, the device runs
each piece of work in order once it is launched and the device is free, and an event is stamped
when the device reaches it. That is enough to show what the lead kernel is for (a launch-bound
phase's span holds no launch gaps), that setup stays outside the span, and that the figures land
in summary.csv and report.md.
"""

from __future__ import annotations

import json
import sys

import pytest
from synthetic_runs import bench, constant, write_run

from twolayer.measure import harness  # noqa: E402
from twolayer.measure.device_memory import phase_peak_bytes
from twolayer.measure.device_time import MAX_ROUNDS, MIN_LEAD_S, MIN_ROUNDS, Stream, cycles_per_second, device_rounds
from twolayer.measure.launches import LaunchCount, activity_of, count_launches, is_launch, tally
from twolayer.measure.phases import PhaseCall, phase_call
from twolayer.measure.timing import RoundPlan
from twolayer.problem import Problem
from twolayer.report.page import build_report
from twolayer.results.derived import host_share, launch_floor_s
from twolayer.results.run_file import ResultsError
from twolayer.results.table import load_runs
from twolayer.variants import build


class ScriptedDevice:
    def __init__(self, launch_s: float = 5e-6, cycles_per_s: float = 1.5e9) -> None:
        self.host = 0.0  # host clock
        self.free = 0.0  # when the device finishes what it was given
        self.launch_s, self.cycles_per_s = launch_s, cycles_per_s
        self.log: list[str] = []

    def enqueue(self, duration_s: float, what: str) -> float:
        self.host += self.launch_s
        self.free = max(self.host, self.free) + duration_s
        self.log.append(what)
        return self.free

    def kernel(self, duration_s: float) -> None:
        self.enqueue(duration_s, "kernel")

    def wait(self) -> None:
        self.host = max(self.host, self.free)

    def stream(self) -> Stream:
        device = self

        class Event:
            stamp: float | None = None

            def record(self) -> None:
                self.stamp = device.enqueue(0.0, "event")

            def synchronize(self) -> None:
                device.host = max(device.host, self.stamp)

            def elapsed_time(self, end) -> float:
                return (end.stamp - self.stamp) * 1e3

        return Stream(new_event=Event, sleep=lambda cycles: device.enqueue(cycles / device.cycles_per_s, "sleep"))


def launch_bound_call(device: ScriptedDevice, kernels: int = 10, kernel_s: float = 2e-6) -> PhaseCall:
    """A phase of `kernels` kernels, each shorter than its launch; its setup runs one long kernel."""
    def work() -> None:
        for _ in range(kernels):
            device.kernel(kernel_s)

    def setup() -> None:
        device.log.append("setup")
        device.kernel(1e-3)
        device.wait()

    def target() -> None:
        work()
        device.wait()

    return PhaseCall(target, setup, work)


def test_the_sleep_kernel_is_calibrated_with_events():
    """Within a launch's latency over a millisecond's sleep: the lead only has to be long enough."""
    device = ScriptedDevice(cycles_per_s=1.5e9)
    assert cycles_per_second(device.stream()) == pytest.approx(1.5e9, rel=0.02)


def test_a_launch_bound_phase_spans_only_its_kernels_and_not_its_launch_gaps_or_setup():
    device = ScriptedDevice(launch_s=5e-6)
    spans = device_rounds(launch_bound_call(device, kernels=10, kernel_s=2e-6), rounds=7, round_s=80e-6,
                          stream=device.stream())
    assert spans == pytest.approx([20e-6] * 7)  # 10 x 2 us back to back; the wall time would be about 50 us
    rounds = [entry for entry in device.log if entry in ("setup", "sleep")]
    assert rounds == ["sleep"] + ["setup", "sleep"] * 7  # calibration, then setup before each round's lead


def test_without_a_long_enough_lead_the_gaps_would_be_counted():
    """The lead is what makes the span honest: with the host left to launch into an idle device,
    the same phase spans its launches, not its kernels."""
    device = ScriptedDevice(launch_s=5e-6)
    call = launch_bound_call(device)
    stream = device.stream()
    start, end = stream.new_event(), stream.new_event()
    call.setup()
    start.record()
    call.work()
    end.record()
    end.synchronize()
    assert start.elapsed_time(end) / 1e3 > 2 * 20e-6


def test_device_rounds_are_capped_and_need_one():
    device = ScriptedDevice()
    call = launch_bound_call(device, kernels=1)
    assert len(device_rounds(call, rounds=5000, round_s=1e-6, stream=device.stream())) == MAX_ROUNDS
    assert len(device_rounds(call, rounds=5000, round_s=10e-3, stream=device.stream())) == 33  # 1 s / (3 x 10 ms)
    assert len(device_rounds(call, rounds=5000, round_s=1.0, stream=device.stream())) == MIN_ROUNDS
    with pytest.raises(ValueError, match="at least one round"):
        device_rounds(call, rounds=0, round_s=1e-6, stream=device.stream())


def test_the_lead_covers_twice_a_round_and_at_least_the_minimum():
    device = ScriptedDevice(cycles_per_s=1e9)
    slept = []
    stream = device.stream()
    recording = Stream(new_event=stream.new_event, sleep=lambda cycles: (slept.append(cycles), stream.sleep(cycles)))
    call = launch_bound_call(device, kernels=1)
    device_rounds(call, rounds=1, round_s=1e-3, stream=recording)
    device_rounds(call, rounds=1, round_s=1e-9, stream=recording)
    assert slept[1] == pytest.approx(2e-3 * 1e9, rel=0.02) and slept[3] == pytest.approx(MIN_LEAD_S * 1e9, rel=0.02)


def test_host_share():
    assert host_share(50e-6, 20e-6) == pytest.approx(0.6)
    assert host_share(20e-6, 20e-6) == 0


def test_launches_and_device_work_are_told_apart_in_profiler_events():
    events = [("aten::mm", "cpu_op", 9000), ("cudaLaunchKernel", "cuda_runtime", 3000),
              ("cuLaunchKernel", "cuda_driver", 2000), ("cudaGraphLaunch", "cuda_runtime", 4000),
              ("cudaMemcpyAsync", "cuda_runtime", 1000), ("cudaStreamSynchronize", "cuda_runtime", 50000),
              ("cudaEventRecord", "cuda_runtime", 800), ("ampere_sgemm_64x32", "kernel", 3000),
              ("triton_poi_fused_0", "kernel", 1500), ("Memcpy HtoD (Pageable -> Device)", "gpu_memcpy", 500)]
    assert tally(events) == LaunchCount(kernel_launches=4, kernels=3, device_busy_s=5e-6)
    assert not is_launch("cudaDeviceSynchronize") and is_launch("cudaLaunchKernelExC")


def test_events_without_an_activity_type_are_read_by_their_device():
    """Torch 2.11's profiler events have no activity_type() (every cuda benchmark failed on the lent
    H200 for it): there device work is an event on the cuda device that is no user annotation."""
    from torch.autograd import DeviceType

    class Event:
        def __init__(self, device, annotation=False):
            self.device, self.annotation = device, annotation

        def device_type(self):
            return self.device

        def is_user_annotation(self):
            return self.annotation

    class Typed(Event):
        def activity_type(self):
            return "gpu_memcpy"

    assert activity_of(Event(DeviceType.CUDA)) == "kernel"
    assert activity_of(Event(DeviceType.CPU)) not in ("kernel", "gpu_memcpy", "gpu_memset")
    assert activity_of(Event(DeviceType.CUDA, annotation=True)) not in ("kernel", "gpu_memcpy", "gpu_memset")
    assert activity_of(Typed(DeviceType.CPU)) == "gpu_memcpy"  # where torch names it, its name is taken


def test_counting_launches_profiles_one_call_with_its_setup_outside():
    """On the cpu the profiler sees no device: the plumbing runs and counts nothing, and the setup
    ran before the profiled call (the call's own ops were profiled, the setup's were not)."""
    ran = []
    call = phase_call(build("torch_manual", Problem(seed=1), "cpu"), "forward")
    counted = count_launches(PhaseCall(lambda: (ran.append("target"), call.target()),
                                       lambda: (ran.append("setup"), call.setup())), "cpu")
    assert counted == LaunchCount(0, 0, 0.0) and ran == ["setup", "target"]


def test_the_launch_floor_is_one_sync_plus_each_launch():
    assert launch_floor_s(12, launch_s=8e-6, sync_s=5e-6) == pytest.approx(5e-6 + 12 * 3e-6)
    assert launch_floor_s(3, launch_s=4e-6, sync_s=5e-6) == pytest.approx(5e-6)  # a launch never costs less than 0


class FakeCuda:
    """torch.cuda's memory counters over a scripted allocator."""

    def __init__(self) -> None:
        self.allocated, self.peak, self.log = 0, 0, []

    def allocate(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)

    def synchronize(self) -> None:
        self.log.append("sync")

    def reset_peak_memory_stats(self) -> None:
        self.log.append("reset")
        self.peak = self.allocated

    def memory_allocated(self) -> int:
        return self.allocated

    def max_memory_allocated(self) -> int:
        return self.peak


def test_peak_bytes_counts_the_phase_above_what_it_started_with_and_not_its_setup():
    cuda = FakeCuda()
    cuda.allocate(1_000_000)  # the weights and data

    def setup() -> None:  # a larger transient than the phase's: it must not count
        cuda.allocate(5_000_000)
        cuda.allocate(-5_000_000)
        cuda.allocate(40_000)  # what setup leaves (the forward's saved tensors)

    def target() -> None:
        cuda.allocate(300_000)
        cuda.allocate(-200_000)

    assert phase_peak_bytes(PhaseCall(target, setup), cuda) == 300_000
    assert cuda.log == ["sync", "reset", "sync"]


def test_on_cuda_the_harness_records_the_device_figures_after_the_timed_rounds(monkeypatch):
    events = []
    device = ScriptedDevice()
    call = launch_bound_call(device)

    class Benchmark:
        disabled, extra_info = False, {}

        def pedantic(self, target, setup=None, rounds=1, warmup_rounds=0, iterations=1):
            events.append("pedantic")

    monkeypatch.setattr(harness, "plan_rounds", lambda *a, **k: RoundPlan(rounds=9, warmup_rounds=2, probe_round_s=60e-6))
    monkeypatch.setattr(harness, "canary_seconds", lambda: events.append("canary") or 1e-4)
    monkeypatch.setattr(harness, "machine_load", lambda **k: {})
    monkeypatch.setattr(harness, "cuda_stream", device.stream)
    monkeypatch.setattr(harness, "count_launches",
                        lambda c, d: events.append(("launches", d)) or LaunchCount(10, 10, 20e-6))
    monkeypatch.setattr(harness, "phase_peak_bytes", lambda c, cuda: events.append("peak") or 4096)
    benchmark = Benchmark()
    harness.time_call(benchmark, call, budget=None, device="cuda")
    assert events == ["canary", "pedantic", "canary", ("launches", "cuda"), "peak"]
    info = benchmark.extra_info
    assert info["device_s"] == pytest.approx([20e-6] * 9)
    assert (info["kernel_launches"], info["kernels"], info["device_busy_s"], info["peak_bytes"]) == (10, 10, 20e-6, 4096)

    for device, torch_work in (("cpu", True), ("cuda", False)):  # a cpu row; jax on cuda, unseen by torch's events
        events.clear()
        other = Benchmark()
        other.extra_info = {}
        harness.time_call(other, call, budget=None, device=device, torch_work=torch_work)
        assert events == ["canary", "pedantic", "canary"] and "device_s" not in other.extra_info


def cuda_bench(variant, phase, wall_s, device_s=None, launches=None, peak=None):
    entry = bench(variant, phase, constant(wall_s), device="cuda", device_name="Scripted GPU")
    if phase == "overhead":
        entry["extra_info"].update(size=None, dtype=None, flops=0)
    if device_s is not None:
        entry["extra_info"]["device_s"] = constant(device_s)
    if launches is not None:
        entry["extra_info"].update(kernel_launches=launches, kernels=launches, device_busy_s=device_s)
    if peak is not None:
        entry["extra_info"]["peak_bytes"] = peak
    return entry


def test_device_figures_reach_summary_csv_and_the_report(tmp_path):
    run = write_run(tmp_path / "gpu.json", [
        cuda_bench("harness_sync", "overhead", 5e-6, device_s=0.5e-6, launches=0),
        cuda_bench("harness_launch", "overhead", 8e-6, device_s=1e-6, launches=1),
        cuda_bench("torch_autograd", "iteration", 150e-6, device_s=30e-6, launches=14, peak=800_000),
        cuda_bench("cuda_graph", "iteration", 15e-6, device_s=12e-6, launches=1, peak=0),
        bench("torch_manual", "iteration", constant(200e-6)),  # a cpu row: nothing of this applies
    ])
    table = load_runs([run]).set_index(["device", "variant"])
    autograd = table.loc[("cuda", "torch_autograd")]
    assert autograd["device_median_s"] == pytest.approx(30e-6)
    assert autograd["host_share"] == pytest.approx(0.8)
    assert autograd["launch_floor_s"] == pytest.approx(5e-6 + 14 * 3e-6)
    assert (autograd["kernel_launches"], autograd["peak_bytes"]) == (14, 800_000)
    assert table.loc[("cuda", "cuda_graph"), "launch_floor_s"] == pytest.approx(8e-6)
    cpu = table.loc[("cpu", "torch_manual")]
    assert cpu[["device_median_s", "host_share", "launch_floor_s", "kernel_launches", "peak_bytes"]].isna().all()

    report = build_report(load_runs([run]), charts=False)
    text = report.markdown()
    assert "## On the device: wall time, device time and launches" in text
    assert "`cuda_graph` iteration 15.0 us: 10.0x faster than `torch_autograd` (150.0 us)" in text
    summary = report.files(tmp_path)[tmp_path / "summary.csv"]
    assert "device_median_s,host_share,device_busy_s,kernel_launches,kernels,launch_floor_s,peak_bytes" in summary


def test_a_cpu_only_report_has_no_device_section(tmp_path):
    run = write_run(tmp_path / "cpu.json", [bench("torch_manual", "iteration", constant(200e-6))])
    assert "On the device" not in build_report(load_runs([run]), charts=False).markdown()


@pytest.mark.parametrize("field, value, expected", [
    ("device_s", [1e-5, -1e-6], "extra_info.device_s[1]"),
    ("device_s", "fast", "extra_info.device_s"),
    ("kernel_launches", 2.5, "extra_info.kernel_launches"),
    ("peak_bytes", -1, "extra_info.peak_bytes"),
])
def test_a_false_device_field_is_refused_in_one_line(tmp_path, field, value, expected):
    entry = cuda_bench("torch_autograd", "iteration", 150e-6)
    entry["extra_info"][field] = value
    path = write_run(tmp_path / "bad.json", [entry])
    with pytest.raises(ResultsError) as raised:
        load_runs([path])
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_the_device_rows_pool_across_passes(tmp_path):
    first = cuda_bench("torch_autograd", "iteration", 150e-6, device_s=30e-6, launches=14, peak=800_000)
    second = json.loads(json.dumps(first))
    first["extra_info"]["pass"], second["extra_info"]["pass"] = 1, 2
    second["extra_info"]["device_s"] = constant(40e-6)
    second["extra_info"]["peak_bytes"] = 900_000
    row = load_runs([write_run(tmp_path / "passes.json", [first, second])]).iloc[0]
    assert row["device_median_s"] == pytest.approx(35e-6, rel=0.05) and row["peak_bytes"] == 900_000


def test_every_phase_call_names_its_work_without_the_synchronisation():
    variant = build("torch_manual", Problem(seed=2), "cpu")
    synced = []
    variant.synchronize = lambda: synced.append(1)
    for phase in ("forward", "backward", "step", "iteration"):
        call = phase_call(variant, phase)
        if call.setup is not None:
            call.setup()
        before = len(synced)
        call.work()
        assert len(synced) == before, f"{phase}: work() synchronised"
        call.target()
        assert len(synced) == before + 1, f"{phase}: target() is work() and one synchronisation"



def test_without_threadpoolctl_numpy_threads_are_unknown_and_setting_threads_still_works(monkeypatch):
    """A GPU machine's image may lack threadpoolctl: provenance says unknown rather than failing."""
    import torch

    from twolayer.provenance import numpy_threads, set_threads

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import raises ImportError
    before = torch.get_num_threads()
    assert numpy_threads() is None
    set_threads(1)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(before)
