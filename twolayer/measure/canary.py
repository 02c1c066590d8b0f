"""A fixed probe workload timed before and after each benchmark, to catch the machine itself slowing.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.measure.canary".
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from twolayer.atomic_files import write_atomically
from twolayer.disturbance import is_disturbed
from twolayer.hardware import hardware_identity
from twolayer.provenance import host_name, numpy_threads

CANARY_CALLS = 30  # about 3 ms of work: cheap next to a benchmark, long enough for a stable median
_rng = np.random.default_rng(0)
_A = _rng.standard_normal((64, 1000)).astype(np.float32)
_B = _rng.standard_normal((1000, 100)).astype(np.float32)
_OUT = np.empty((64, 100), dtype=np.float32)
# 2**17 floats: above torch's parallel grain (32768 elements), so the add runs on every intra-op thread.
_X = torch.ones(1 << 17)
_Y = torch.empty_like(_X)


def _blas_probe() -> None:
    np.dot(_A, _B, out=_OUT)


def _torch_pool_probe() -> None:
    torch.add(_X, _X, out=_Y)


# Each probe is timed in a run of its own: calls alternating between the two pools make each pool
# wait for the other's spinning threads (on two cores, 8 ms a call instead of 0.13 ms).
PROBES = (_blas_probe, _torch_pool_probe)


def canary_seconds(probes: tuple[Callable[[], None], ...] = PROBES, clock: Callable[[], float] = time.perf_counter,
                   calls: int = CANARY_CALLS) -> float:
    """The sum over the probes of the median seconds of one call."""
    total = 0.0
    for probe in probes:
        probe()  # warm
        samples = []
        for _ in range(calls):
            start = clock()
            probe()
            samples.append(clock() - start)
        total += statistics.median(samples)
    return total


def _runnable_threads(stat_text: str) -> int:
    for line in stat_text.splitlines():
        if line.startswith("procs_running"):
            return int(line.split()[1])
    return 0


def _own_running_threads() -> int:
    running = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            # the state follows the parenthesised command name, which may itself hold spaces
            running += (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return running


def machine_load(samples: int = 5, interval_s: float = 0.01) -> dict[str, float | int | None]:
    """The 1-minute load average and how many threads of other processes were runnable (the
    median over a few samples; ours are subtracted), so a reader can see contention."""
    try:
        load = float(Path("/proc/loadavg").read_text().split()[0])
        others = []
        for i in range(samples):
            if i:
                time.sleep(interval_s)
            others.append(max(0, _runnable_threads(Path("/proc/stat").read_text()) - _own_running_threads()))
        return {"load_avg_1m": load, "others_running": int(statistics.median(others))}
    except (OSError, ValueError):  # not Linux: provenance must never break a run
        try:
            return {"load_avg_1m": os.getloadavg()[0], "others_running": None}
        except (OSError, AttributeError):
            return {"load_avg_1m": None, "others_running": None}


@dataclass(frozen=True)
class QuietCanary:
    """The lowest run-median canary seen on this hardware with these threads and versions."""

    canary_s: float
    hardware: str
    torch_threads: int
    numpy_threads: int | None
    torch_version: str
    numpy_version: str
    seen: str  # UTC time it was measured

    @property
    def setup(self) -> tuple:
        return self.hardware, self.torch_threads, self.numpy_threads, self.torch_version, self.numpy_version


def current_setup() -> tuple:
    return (hardware_identity()["hardware"], torch.get_num_threads(), numpy_threads(), torch.__version__,
            np.__version__)


def quiet_path(cache_dir: Path) -> Path:
    return cache_dir / f"canary-{host_name()}.json"


def _read_quiet(cache_dir: Path) -> list[QuietCanary]:
    try:
        return [QuietCanary(**entry) for entry in json.loads(quiet_path(cache_dir).read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        return []  # no cache, or one from another version: nothing known yet


def known_quiet_canary(cache_dir: Path) -> float | None:
    """This machine's quiet canary for the current hardware, threads and versions, if ever seen."""
    setup = current_setup()
    return next((q.canary_s for q in _read_quiet(cache_dir) if q.setup == setup), None)


def remember_quiet_canary(cache_dir: Path, canary_s: float, now: float | None = None) -> bool:
    """Keep `canary_s` as the quiet reference when none is known for this setup or it is quieter."""
    if not (canary_s and np.isfinite(canary_s) and canary_s > 0):
        return False
    setup = current_setup()
    entries = _read_quiet(cache_dir)
    known = next((q for q in entries if q.setup == setup), None)
    if known is not None and known.canary_s <= canary_s:
        return False
    fresh = QuietCanary(canary_s, *setup, seen=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    entries = [q for q in entries if q.setup != setup] + [fresh]
    write_atomically(quiet_path(cache_dir), json.dumps([asdict(q) for q in entries], indent=1) + "\n")
    return True


@dataclass(frozen=True)
class MachineState:
    """The machine just now: its canary against the quiet reference, and other processes' load."""

    canary_s: float
    quiet_s: float | None
    load_avg_1m: float | None
    others_running: int | None

    @property
    def busy(self) -> bool:
        return (self.quiet_s is not None and is_disturbed(self.canary_s, self.quiet_s)) or bool(self.others_running)

    def describe(self) -> str:
        parts = [f"canary {self.canary_s * 1e6:.0f} us"]
        if self.quiet_s:
            parts[0] += f", {self.canary_s / self.quiet_s:.2f}x its quiet {self.quiet_s * 1e6:.0f} us"
        if self.load_avg_1m is not None:
            parts.append(f"load average {self.load_avg_1m:.2f}")
        if self.others_running is not None:
            parts.append(f"{self.others_running} other threads runnable")
        return "; ".join(parts)


def machine_state(cache_dir: Path) -> MachineState:
    return MachineState(canary_seconds(), known_quiet_canary(cache_dir), **machine_load())
