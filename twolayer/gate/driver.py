"""`twolayer gate`: paired, interleaved A/B timing of two checkouts, and a verdict that holds on a
busy machine.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.gate.driver".
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from twolayer.analysis.compare import (
    PROVENANCE,
    straddle_reason,
    verdict,
)
from twolayer.atomic_files import write_all_atomically
from twolayer.gate.matching import Remapped, match_of, matched_cases, undistributed
from twolayer.gate.pairs import PAIRED, CaseResult, Pairs
from twolayer.gate.worker import PROTOCOL
from twolayer.gate.workers import GateError, Processes, Side, WorkerProcess, request_all, worker_module
from twolayer.report.verdicts import gate_markdown


@dataclass(frozen=True)
class GateOptions:
    threshold: float = 0.10  # a slowdown beyond 10% fails the gate
    block_s: float = 0.02  # a block of rounds: short enough that a burst spans both sides of a pair
    budget_s: float = 1.0  # wall seconds per side and benchmark in blocks no co-tenant hit, setups included
    wall_cap: float = 4.0  # a timing stops at this many budgets of wall time per side, hit blocks and all
    pairs_per_instance: int = 2  # AB then BA from each build: the order's bias cancels within an instance
    min_instances: int = 8  # fewer give BCa too little to work with
    max_instances: int = 200  # per timing: the budget ends a fast benchmark's instances long before this
    max_block_rounds: int = 1000
    block_stretch: float = 2.0  # a block slowed beyond this many times its planned length is cut short
    processes: int = 6  # worker processes per side: the process is a unit of noise (pyperf spawns 20)
    retimes: int = 3  # extra timings, in fresh processes and pooled, for a benchmark that cannot be decided


def block_rounds(probe_round_s: float, options: GateOptions) -> int:
    return int(min(max(round(options.block_s / max(probe_round_s, 1e-9)), 1), options.max_block_rounds))


def time_instance(base: Side, new: Side, case: str, rounds: int, instance: int, process: int, options: GateOptions,
                  pairs: Pairs, spent: dict[str, float], clock: Callable[[], float] = time.perf_counter,
                  timing: int = 0) -> None:
    """`pairs_per_instance` pairs of blocks of `rounds` rounds, alternating AB, BA, ...; adds each
    side's wall time (setups included) to `spent`."""
    for count in range(options.pairs_per_instance):
        # ABBA within the instance, and BAAB in every other instance, matching the order of the
        # builds, so that neither side is always the first timed after the other's build
        order = (("base", base), ("new", new)) if (count + instance) % 2 == 0 else (("new", new), ("base", base))
        medians, walls = {}, {}
        for name, side in order:
            start = clock()
            values = side.request("measure", case=case, metric="time_s", rounds=rounds,
                                  max_s=options.block_s * options.block_stretch)["values"]
            walls[name] = clock() - start
            spent[name] += walls[name]
            medians[name] = float(np.median(values))
        pairs.base.append(medians["base"])
        pairs.new.append(medians["new"])
        pairs.base_wall.append(walls["base"])
        pairs.new_wall.append(walls["new"])
        pairs.instance.append(instance)
        pairs.process.append(process)
        pairs.timing.append(timing)


def gate_case(pool: Processes, case: dict, options: GateOptions,
              clock: Callable[[], float] = time.perf_counter) -> CaseResult:
    """Time instances (a fresh build on each side, then a few pairs), going round the pool's pairs
    of worker processes, until each side has spent its budget; while the interval cannot decide,
    retime in fresh processes where the pool can start them, pooling; release every side."""
    pairs = Pairs()
    timings, instance, rounds, fastest = 0, 0, 1, math.inf
    before: dict = {}
    warm: set[int] = set()  # processes that have run this case's discarded first block
    while True:
        spent = {"base": 0.0, "new": 0.0}
        count, clean_before = 0, pairs.clean_wall()
        # until each side has its budget in clean blocks (a co-tenant's hits do not count), within a
        # wall-clock cap, and at least a build on every process
        while count < options.max_instances and (count < max(options.min_instances, len(pool)) or (
                pairs.clean_wall() - clean_before < options.budget_s
                and max(spent.values()) < options.wall_cap * options.budget_s)):
            process, base, new = pool.pair(count)
            start = clock()
            probes = [side.request("prepare", case=case["id"], instance=instance)["probe_round_s"]
                      for side in ((base, new) if instance % 2 == 0 else (new, base))]
            spent["base"] += (clock() - start) / 2
            spent["new"] += (clock() - start) / 2
            # the fastest probe so far, since a burst only slows some: a burst during the first
            # builds would otherwise fix the whole case at blocks of a round or two. Both blocks of a
            # pair always have the same rounds.
            fastest = min(fastest, *probes)
            rounds = block_rounds(fastest, options)
            if instance == 0:
                before = base.request("canary")
            if process not in warm:  # a block each, discarded: every process starts warm
                for side in (base, new):
                    side.request("measure", case=case["id"], metric="time_s", rounds=rounds,
                                 max_s=options.block_s * options.block_stretch)
                warm.add(process)
            time_instance(base, new, case["id"], rounds, instance, process, options, pairs, spent, clock,
                          timing=timings)
            instance, count = instance + 1, count + 1
        timings += 1
        interval = pairs.interval()
        decided = verdict(interval, options.threshold)
        if decided != "inconclusive" or timings > options.retimes:
            break
        pool.renew()
    after = pool.bases[0].request("canary")
    for side in pool.sides():
        side.request("release", case=case["id"])
    return case_result(case, decided, interval, pairs, rounds, timings, instance, before, after, options.threshold)


def case_result(case: dict, decided: str, interval, pairs: Pairs, rounds: int, timings: int, instance: int,
                before: dict, after: dict, threshold: float) -> CaseResult:
    """One benchmark's result: its verdict, the reason where it is undecided, and per side the
    median block of the pairs no co-tenant hit (what a calm moment times)."""
    reason = ""
    if decided == "inconclusive":
        why = (straddle_reason(interval, threshold) if np.isfinite(interval.low)
               else "too few pairs the co-tenant left alone to decide")
        reason = (f"{why} after {timings} timings, {instance} instances in {len(set(pairs.process))} process pairs, "
                  f"{len(pairs.base)} pairs ({pairs.hit_fraction():.0%} of pairs hit on one side); "
                  f"machine: {describe_machine(after)}")
    clean = pairs.clean()
    clean = clean if clean.any() else np.ones(len(pairs.base), dtype=bool)
    return CaseResult(case=case, verdict=decided, interval=interval, pairs=len(pairs.base), block_rounds=rounds,
                      timings=timings, process_pairs=len(set(pairs.process)), reason=reason,
                      # per side, the median block of the clean pairs: what a calm moment times
                      base_median_s=float(np.median(np.asarray(pairs.base)[clean])),
                      new_median_s=float(np.median(np.asarray(pairs.new)[clean])), hit_fraction=pairs.hit_fraction(),
                      machine_before=before, machine_after=after,
                      pair_medians_s={"base": pairs.base, "new": pairs.new, "instance": pairs.instance,
                                      "process": pairs.process, "timing": pairs.timing})


def describe_machine(state: dict) -> str:
    parts = [f"canary {state['canary_s'] * 1e6:.0f} us"]
    if state.get("load_avg_1m") is not None:
        parts.append(f"load average {state['load_avg_1m']:.2f}")
    if state.get("others_running") is not None:
        parts.append(f"{state['others_running']} other threads runnable")
    return ", ".join(parts)


def result_rows(results: list[CaseResult], only_base: list[dict], only_new: list[dict], base_commit: str,
                new_commit: str, threshold: float) -> pd.DataFrame:
    """compare.csv's columns (so `compare`'s readers read the gate too), plus what the pairing saw."""
    rows = []
    for r in results:
        rows.append({**match_of(r.case), "base_median_s": r.base_median_s,
                     "new_median_s": r.new_median_s, "ratio": r.interval.ratio, "ratio_low": r.interval.low,
                     "ratio_high": r.interval.high, "interval_kind": PAIRED, "reason": r.reason, "verdict": r.verdict,
                     "pairs": r.pairs, "block_rounds": r.block_rounds, "timings": r.timings,
                     "process_pairs": r.process_pairs,
                     "hit_pairs": r.hit_fraction, "canary_before_s": r.machine_before["canary_s"],
                     "canary_after_s": r.machine_after["canary_s"],
                     "load_avg_1m": r.machine_before.get("load_avg_1m"),
                     "others_running": r.machine_before.get("others_running")})
    for cases, name in ((only_base, "only_in_base"), (only_new, "only_in_new")):
        rows += [{**match_of(c), "verdict": name} for c in cases]
    out = pd.DataFrame(rows)
    out.insert(0, "new_run_id", new_commit)
    out.insert(0, "base_run_id", base_commit)
    out["threshold"] = threshold
    return out


def start_sides(base_tree: Path, new_tree: Path, out: Path, processes: int,
                generation: int = 0) -> tuple[list, list, dict, dict]:
    """`processes` workers per side, each checked to run its own tree's code and our protocol.
    `generation` counts the pools started before (a retime's fresh processes): it names the logs."""
    started: list[WorkerProcess] = []
    suffix = f"-{generation}" if generation else ""
    try:
        for index in range(processes):
            started.append(WorkerProcess("base", base_tree, out / "logs" / f"worker-base-{index}{suffix}.log"))
            started.append(WorkerProcess("head", new_tree, out / "logs" / f"worker-head-{index}{suffix}.log"))
        hellos = request_all(started, "hello")
        for side, hello in zip(started, hellos):
            if hello.get("protocol") != PROTOCOL:
                raise GateError(f"the {side.name} worker speaks protocol {hello.get('protocol')}, this driver "
                                f"{PROTOCOL}")
            if Path(hello["root"]).resolve() != side.tree.resolve():
                raise GateError(f"the {side.name} worker ran the twolayer of {hello['root']}, not of {side.tree}")
    except BaseException:
        for side in started:
            side.close()
        raise
    return started[0::2], started[1::2], hellos[0], hellos[1]


def provenance_warnings(base_hello: dict, new_hello: dict) -> list[str]:
    """What differs between the two trees' worker processes beyond the code, as `compare` warns
    of it (one machine by construction, so not the host): versions, threads, hardware, BLAS."""
    def facts(hello: dict) -> dict:
        return {**hello["machine"], "suite_version": hello.get("suite_version")}

    base, new = facts(base_hello), facts(new_hello)
    return [f"{name} differs: {base.get(name)} vs {new.get(name)}" for name in PROVENANCE
            if name != "machine" and base.get(name) != new.get(name)]


def run_gate(base_tree: Path, new_tree: Path, out: Path, selection: dict, options: GateOptions,
             progress: Callable[[str], None] = print) -> tuple[pd.DataFrame, list[str]]:
    """Gate every benchmark both trees can run; write compare.csv, gate.json and gate.md to `out`.
    Returns the table and the provenance warnings."""
    if worker_module(new_tree) is None or not (base_tree / "twolayer").is_dir():
        raise GateError(f"{base_tree if (new_tree / 'twolayer').is_dir() else new_tree} holds no twolayer checkout")
    if worker_module(base_tree) is None:
        raise GateError(f"the base tree {base_tree} predates the paired gate (no twolayer/gate/worker.py)")
    bases, news, base_hello, new_hello = start_sides(base_tree, new_tree, out, options.processes)
    pool = Processes(bases, news)
    try:
        replies = request_all([*bases, *news], "cases", **selection)
        base_cases, new_cases = replies[0]["cases"], replies[len(bases)]["cases"]
        if not selection.get("variants"):
            base_cases, new_cases = undistributed(base_cases), undistributed(new_cases)
        both, only_base, only_new = matched_cases(base_cases, new_cases)
        if not both:
            raise GateError("the two trees share no benchmark that can run here: nothing to compare")
        base_ids = {c["id"]: c["base_id"] for c in both}
        starts = itertools.count(1)

        def fresh_processes() -> tuple[list[Side], list[Side]]:
            fresh_bases, fresh_news, _, _ = start_sides(base_tree, new_tree, out, options.processes,
                                                        generation=next(starts))
            try:
                request_all([*fresh_bases, *fresh_news], "cases", **selection)
            except BaseException:
                for side in (*fresh_bases, *fresh_news):
                    side.close()
                raise
            return [Remapped(side, base_ids) for side in fresh_bases], fresh_news

        pool = Processes([Remapped(side, base_ids) for side in bases], news, renew=fresh_processes)
        results = []
        for index, case in enumerate(both, 1):
            result = gate_case(pool, case, options)
            results.append(result)
            progress(f"[{index}/{len(both)}] {result.verdict:<12} {case['id']}: {result.interval.ratio:.3f} "
                     f"({result.interval.low:.3f}-{result.interval.high:.3f}), {result.pairs} pairs of "
                     f"{result.block_rounds} rounds in {result.process_pairs} process pairs, "
                     f"{result.timings} timing(s)")
    finally:
        for side in pool.sides():
            side.close()
    warnings = provenance_warnings(base_hello, new_hello)
    table = result_rows(results, only_base, only_new, (base_hello["commit"] or "base")[:12],
                        (new_hello["commit"] or "head")[:12], options.threshold)
    record = {"options": asdict(options), "selection": selection, "base": base_hello, "head": new_hello,
              "benchmarks": [{"case": r.case, "verdict": r.verdict, "pair_medians_s": r.pair_medians_s,
                              "machine_before": r.machine_before, "machine_after": r.machine_after}
                             for r in results]}
    write_all_atomically({out / "compare.csv": table.to_csv(index=False),
                          out / "gate.json": json.dumps(record, separators=(",", ":")) + "\n",
                          out / "gate.md": gate_markdown(table, options.threshold)})
    return table, warnings
