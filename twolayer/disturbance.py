"""The rules that decide whether a figure was taken on a disturbed machine: a canary beyond its
margin, a benchmark begun beside a co-tenant, a machine that changed speed between two runs."""

from __future__ import annotations

import statistics

import numpy as np

# A canary this much slower than the reference means the machine itself was slowed.
DISTURBED_CANARY_RATIO = 1.15


def canary_reference(run_canaries: list[float], quiet_s: float | None) -> float:
    """What a calm canary takes: the run's median, or the machine's known quiet one if lower."""
    values = [c for c in run_canaries if c and np.isfinite(c)]
    candidates = ([statistics.median(values)] if values else []) + ([quiet_s] if quiet_s else [])
    return min(candidates) if candidates else float("nan")


def beyond_canary_margin(ratio: float) -> bool:
    """Whether a ratio of two canaries is a change of the machine's speed, not the canary's noise."""
    return bool(np.isfinite(ratio)) and not 1 / DISTURBED_CANARY_RATIO <= ratio <= DISTURBED_CANARY_RATIO


def is_disturbed(canary_s: float | None, reference_s: float) -> bool:
    return bool(canary_s and np.isfinite(reference_s) and canary_s > DISTURBED_CANARY_RATIO * reference_s)


def contended(extra: dict, machine: dict) -> bool:
    """Whether a benchmark (its `extra_info`) began with other processes' threads runnable beyond
    the cores its own threads left free on its machine (the run's `machine_info`): a co-tenant
    sharing its cores, which a calm canary can miss (a one-thread co-tenant on two cores left the
    canary calm and made identical torch steps up to 1.6x slower)."""
    cores = machine.get("usable_cores") or machine.get("cpu_count")  # runs before usable_cores: all cpus
    others = extra.get("others_running")
    threads = max(extra.get("torch_threads") or 0, extra.get("numpy_threads") or 0)
    return bool(others and cores and threads and others + threads > cores)


def canaries(bench: dict) -> list[float]:
    """The canaries timed before and after a benchmark, those recorded."""
    return [c for c in (bench["extra_info"].get(k) for k in ("canary_before_s", "canary_after_s")) if c]


def disturbed_benchmarks(result: dict) -> list[dict]:
    """The benchmarks whose canary ran slow against the run's usual or the machine's quiet one, or
    that began with another process's threads sharing their cores."""
    benchmarks = result["benchmarks"]
    reference = canary_reference([max(canaries(b), default=0.0) for b in benchmarks],
                                 result.get("twolayer", {}).get("quiet_canary_s"))
    machine = result.get("machine_info") or {}
    return [b for b in benchmarks
            if any(is_disturbed(c, reference) for c in canaries(b)) or contended(b["extra_info"], machine)]


def calmer(again: dict, first: dict, machine: dict) -> bool:
    """Whether a benchmark timed again is the better measurement: free of a co-tenant where the
    first was not, or as free and with a calmer canary."""
    shared_again, shared_first = contended(again["extra_info"], machine), contended(first["extra_info"], machine)
    if shared_again != shared_first:
        return shared_first
    return max(canaries(again), default=0.0) < max(canaries(first), default=0.0)
