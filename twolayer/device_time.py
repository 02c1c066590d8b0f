"""Device time beside wall time on cuda: CUDA events around each phase's own work.

The wall-clock rounds (pytest-benchmark's) stay exactly as on the cpu: setup, then the call and
a device synchronisation inside the clock. Recording an event is a runtime call that costs the
host a microsecond or two; inside those rounds it would be timed as the phase's. So the events
get rounds of their own, run right after the wall-clock rounds, with the same setup before each:

    setup()                     untimed; ends in a synchronisation, so the device is idle
    sleep(lead)                 a spinning kernel (`torch.cuda._sleep`) that keeps the stream busy
    start.record()              while the host queues the start event,
    work()                      the phase's kernels (without its final synchronisation)
    end.record()                and the end event behind them
    end.synchronize()
    device_s = start.elapsed_time(end) / 1000

The lead keeps the stream busy for twice a whole round's wall time as the planning probe saw it,
setup included (and at least `MIN_LEAD_S`), so
by the time the start event is reached every kernel of the phase is already queued: the span is
the device running the phase back to back, without the gaps a launch-bound host leaves between
kernels, and without the first launch's latency. `host_share = 1 - device_median_s / median_s`
is then the part of the wall time the device was not running the phase: dispatch, launches and
the synchronisation's round trip. A phase that waits on the device from inside (`.item()`)
stops queueing at that point; its span then includes the gaps after it, and its host share is a
lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from twolayer.phases import PhaseCall

MAX_ROUNDS = 200  # the median of 200 spans is stable; each round also pays the lead's sleep
MIN_ROUNDS = 20
BUDGET_S = 1.0  # the device pass's time, setup and lead included (a round costs about 3 of the probe's)
MIN_LEAD_S = 50e-6  # below this a kernel launch or two could outrun the sleep
CALIBRATION_CYCLES = 1_000_000  # about a millisecond of sleep on any recent GPU


class Event(Protocol):
    def record(self) -> None: ...
    def synchronize(self) -> None: ...
    def elapsed_time(self, end: Event) -> float: ...  # milliseconds, as torch.cuda.Event


@dataclass(frozen=True)
class Stream:
    """What device timing needs of a stream; `cuda_stream()` gives the real one, tests a fake."""

    new_event: Callable[[], Event]
    sleep: Callable[[int], None]  # a kernel that spins for about this many device cycles


def cuda_stream() -> Stream:
    import torch

    return Stream(new_event=lambda: torch.cuda.Event(enable_timing=True), sleep=torch.cuda._sleep)


def cycles_per_second(stream: Stream) -> float:
    """The sleep kernel's clock, measured with events (the clock varies by GPU and boost state)."""
    start, end = stream.new_event(), stream.new_event()
    start.record()
    stream.sleep(CALIBRATION_CYCLES)
    end.record()
    end.synchronize()
    return CALIBRATION_CYCLES / (start.elapsed_time(end) / 1e3)


def device_rounds(call: PhaseCall, rounds: int, round_s: float, stream: Stream) -> list[float]:
    """Per round, the seconds between an event queued before the phase's work and one after it;
    `round_s` is a round's wall time, for the lead. As many rounds as the wall-clock pass had, at
    most `MAX_ROUNDS` and what fits `BUDGET_S` (at least `MIN_ROUNDS`): a large size's rounds
    would otherwise cost minutes of sleeping leads."""
    if rounds < 1:
        raise ValueError(f"device timing needs at least one round, got {rounds}")
    work = call.work or call.target
    lead_cycles = int(max(2 * round_s, MIN_LEAD_S) * cycles_per_second(stream))
    start, end = stream.new_event(), stream.new_event()
    spans = []
    affordable = max(MIN_ROUNDS, int(BUDGET_S / (3 * max(round_s, 1e-9))))
    for _ in range(min(rounds, MAX_ROUNDS, affordable)):
        if call.setup is not None:
            call.setup()
        stream.sleep(lead_cycles)
        start.record()
        work()
        end.record()
        end.synchronize()
        spans.append(start.elapsed_time(end) / 1e3)
    return spans


def host_share(wall_median_s: float, device_median_s: float) -> float:
    """The part of a call's wall time the device was not running the phase (0 when it never idled)."""
    return 1 - device_median_s / wall_median_s if wall_median_s > 0 else float("nan")
