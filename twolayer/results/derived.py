"""Figures derived from a run's measured ones: the launch floor under a cuda phase and the host's
share of its wall time (`twolayer/measure/launches.py` and `device_time.py` say what was measured)."""

from __future__ import annotations


def host_share(wall_median_s: float, device_median_s: float) -> float:
    """The part of a call's wall time the device was not running the phase (0 when it never idled)."""
    return 1 - device_median_s / wall_median_s if wall_median_s > 0 else float("nan")


def launch_floor_s(kernel_launches: float, launch_s: float, sync_s: float) -> float:
    """One synchronisation plus each launch's own cost (an empty launch and sync, less the sync)."""
    return sync_s + kernel_launches * max(launch_s - sync_s, 0.0)
