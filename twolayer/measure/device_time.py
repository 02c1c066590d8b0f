"""Device time beside wall time on cuda: CUDA events around each phase's own work.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.measure.device_time".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from twolayer.measure.phases import PhaseCall

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
