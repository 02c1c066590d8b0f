"""`twolayer gate`: paired, interleaved A/B timing of two checkouts, and a verdict that holds on a
busy machine.

Timing base and head in separate runs compares two moments of a shared machine as much as two
commits: a co-tenant's burst during one run reads as a regression. Here each side runs in its own
worker process (`twolayer.gate_worker`, from its own tree), and the driver alternates short blocks
of rounds of the same benchmark between them (20 ms by default; ABBA order, so neither side always
goes first) until each side has spent its budget. A burst longer than a block lands on both sides
of a pair, and the pair's ratio cancels it. Each side also builds the benchmark afresh, at a
shifted heap address, every two pairs (an "instance"; see `gate_worker`): where arrays lie in
memory moves a short phase by up to 25%, and one build per side would compare two layouts. A block
that a co-tenant hit (50-300x slower, on one side only) is no pairing's to cancel: pairs with one
are left out, counted, and a benchmark left with too few is retimed, then inconclusive. And
as pyperf found, the process itself is a unit of noise: two processes of identical code time
numpy_manual's `step` up to 12% apart, steadily. So each side runs in several worker processes
(6 by default), and the instances of a benchmark go round them.

The statistic comes from the pairs: per pair, the ratio of the block medians (head / base); per
instance, the mean of its pairs' log-ratios; the estimate is the median over instances. Its 95%
interval is a hierarchical bootstrap, process pairs drawn first and instances within them, so
that process, layout and moment all widen it (scipy.stats.bootstrap resamples flat samples only).
The verdict rule is `compare`'s: `slower` or `faster` only when the whole interval lies beyond
the threshold, `unchanged` only when it lies within the threshold. Anything else is retimed a
bounded number of times, each time in fresh worker processes (the old ones are closed), with the
pairs pooled: more pairs from the same processes would leave the processes' own spread as wide as
it was. If it still cannot decide, the
verdict is `inconclusive` and the reason is printed, with the machine's load and canary, rather
than a guess.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd

from twolayer.compare import (
    CONFIDENCE,
    PROVENANCE,
    RatioInterval,
    bca_interval,
    bootstrap_medians,
    straddle_reason,
    verdict,
)
from twolayer.files import write_all_atomically
from twolayer.gate_worker import PROTOCOL

PAIRED = "paired-blocks"
# A block this much slower than its side's lower quartile of blocks was hit by a co-tenant: on two
# cores a second multi-threaded process turns a 0.2 ms call into 8-70 ms now and then, one block at
# a time, on either side. Pairs with a hit block are left out of the statistic (and counted).
HIT_RATIO = 1.5
MIN_CLEAN_INSTANCES = 4  # fewer instances with a clean pair: nothing to decide on


class GateError(Exception):
    """A worker that cannot start, or answers with an error: reported in one line."""


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


class Side(Protocol):
    """What the pairing needs of a side: a real worker process or a scripted one in the tests."""

    def request(self, op: str, **fields) -> dict: ...


class WorkerProcess:
    """A `twolayer.gate_worker` process running the code of `tree`."""

    def __init__(self, name: str, tree: Path, log: Path) -> None:
        self.name, self.tree = name, tree
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "w", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "twolayer.gate_worker"], cwd=tree, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        bufsize=1)

    def request(self, op: str, **fields) -> dict:
        self.send(op, **fields)
        return self.receive(op)

    def send(self, op: str, **fields) -> None:
        """The first half of `request`: send to several workers, then `receive` from each, and their
        work overlaps (starting a pool: each worker's `cases` imports every variant, about a second)."""
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker exited: `receive` reads no line and says so

    def receive(self, op: str) -> dict:
        try:
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError, ValueError):
            line = ""
        if not line:
            raise GateError(f"the {self.name} worker ({self.tree}) exited; its log is {self.log.name}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise GateError(f"the {self.name} worker ({self.tree}): {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            for stream in (self.process.stdin, self.process.stdout, self.log):
                try:
                    stream.close()
                except OSError:
                    pass


@dataclass
class Pairs:
    """The block medians of one benchmark, pair by pair, with the instance and process each pair
    was timed on and each block's wall time."""

    base: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)
    instance: list[int] = field(default_factory=list)
    process: list[int] = field(default_factory=list)  # which pair of worker processes timed it
    timing: list[int] = field(default_factory=list)  # which timing (0: the first, then the retimes) it came from
    base_wall: list[float] = field(default_factory=list)  # wall seconds of each block, setups included
    new_wall: list[float] = field(default_factory=list)

    @property
    def log_ratios(self) -> np.ndarray:
        return np.log(np.asarray(self.new) / np.asarray(self.base))

    def clean(self) -> np.ndarray:
        """Which pairs neither side's co-tenant hit: each block within `HIT_RATIO` of its side's
        lower quartile in the same timing (a real slowdown moves a side's quartile with it; a hit
        does not). Per timing, since each timing runs in processes of its own, and a generation of
        processes can be steadily slower than the last on both sides: on this project's quiet
        2-core VM, numpy `step` ran at 47 us in some generations and 125 us in others, every
        process of a generation alike. Pairs cancel that; judged against another generation's
        quartile, each of its blocks would read as a hit."""
        frame = pd.DataFrame({"base": self.base, "new": self.new,
                              "timing": self.timing if len(self.timing) == len(self.base) else 0})
        if frame.empty:
            return np.zeros(0, dtype=bool)
        quartiles = frame.groupby("timing")[["base", "new"]].transform(lambda side: side.quantile(0.25))
        return ((frame["base"] <= HIT_RATIO * quartiles["base"]) & (frame["new"] <= HIT_RATIO * quartiles["new"])).to_numpy()

    def clean_wall(self) -> float:
        """Wall seconds the slower-spending side has put into clean pairs."""
        clean = self.clean()
        return float(min(np.asarray(self.base_wall)[clean].sum(), np.asarray(self.new_wall)[clean].sum())) \
            if clean.size else 0.0

    def hit_fraction(self) -> float:
        clean = self.clean()
        return float(1 - clean.mean()) if clean.size else 0.0

    def instance_log_ratios(self) -> pd.Series:
        """Per instance, the mean log-ratio of its clean pairs, indexed by (process, instance)."""
        frame = pd.DataFrame({"log": self.log_ratios, "process": self.process, "instance": self.instance})
        return frame[self.clean()].groupby(["process", "instance"])["log"].mean()

    def interval(self, seed: int = 0) -> RatioInterval:
        """The median ratio and its 95% interval; NaNs when fewer than `MIN_CLEAN_INSTANCES`
        instances have a clean pair."""
        logs = self.instance_log_ratios()
        if len(logs) < MIN_CLEAN_INSTANCES:
            return RatioInterval(math.nan, math.nan, math.nan, PAIRED)
        estimate = float(np.exp(np.median(logs)))
        by_process = [group.to_numpy() for _, group in logs.groupby(level="process")]
        if len(by_process) < 2:  # one process pair: BCa over its instances
            low, high = bca_interval((logs.to_numpy(),), lambda sample, axis=-1: np.median(sample, axis=axis), seed)
        else:
            medians = bootstrap_medians(by_process, np.random.default_rng(seed))
            tail = (1 - CONFIDENCE) / 2 * 100
            low, high = np.percentile(medians, [tail, 100 - tail])
        return RatioInterval(estimate, float(np.exp(low)), float(np.exp(high)), PAIRED)


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


@dataclass(frozen=True)
class CaseResult:
    case: dict
    verdict: str
    interval: RatioInterval
    pairs: int
    block_rounds: int
    timings: int  # 1 + the retimes it took
    process_pairs: int  # the worker process pairs its instances went round, retimes' fresh ones included
    reason: str
    base_median_s: float
    new_median_s: float
    hit_fraction: float  # pairs left out: a block on one side hit by a co-tenant
    machine_before: dict
    machine_after: dict
    pair_medians_s: dict


class Processes:
    """The pairs of worker processes (base, head) that a benchmark's instances go round, each pair
    with an id of its own for the bootstrap. `renew` swaps them all for fresh processes: a retime
    in the same processes adds pairs but cannot narrow the part of the interval that the processes
    themselves cause, and on a busy machine that part is most of it."""

    def __init__(self, bases: list[Side], news: list[Side],
                 renew: Callable[[], tuple[list[Side], list[Side]]] | None = None) -> None:
        self.renewer = renew
        self.first_id = 0  # the id of bases[0]; ids are never reused, so old pairs stay distinct
        self._take(bases, news)

    def _take(self, bases: list[Side], news: list[Side]) -> None:
        if len(bases) != len(news) or not bases:
            raise ValueError("a pool needs as many base as head processes, and at least one of each")
        self.bases, self.news = list(bases), list(news)

    def __len__(self) -> int:
        return len(self.bases)

    def pair(self, slot: int) -> tuple[int, Side, Side]:
        slot %= len(self.bases)
        return self.first_id + slot, self.bases[slot], self.news[slot]

    def sides(self) -> tuple[Side, ...]:
        return (*self.bases, *self.news)

    def renew(self) -> bool:
        """Fresh processes in place of these (closed first); False where there is no way to start any."""
        if self.renewer is None:
            return False
        for side in self.sides():  # first, so that a side never holds twice its processes' memory
            close = getattr(side, "close", None)
            if close is not None:
                close()
        try:
            fresh_bases, fresh_news = self.renewer()
        except BaseException:
            self.bases, self.news = [], []  # closed already: nothing left for the caller to close
            raise
        self.first_id += len(self.bases)
        self._take(fresh_bases, fresh_news)
        return True


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
    reason = ""
    if decided == "inconclusive":
        why = (straddle_reason(interval, options.threshold) if np.isfinite(interval.low)
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


MATCH = ("device", "variant", "phase", "dtype", "dtype_mode", "size", "world_size", "scaling")
# what a side from before distributed variants existed says of its cases: one rank, no scaling
MATCH_DEFAULTS = {"world_size": 1, "scaling": ""}


def match_of(case: dict) -> dict:
    return {k: case.get(k, MATCH_DEFAULTS.get(k)) for k in MATCH}


def undistributed(cases: list[dict]) -> list[dict]:
    """The cases of a default selection less the distributed variants' (ddp). Their backward hands
    the all-reduce to the backend's thread and waits for it; under a co-tenant that handoff waits
    on the scheduler, per process, by milliseconds: a trial on identical code (2026-11-29) had
    ddp backward at 3.7 ms in the base's processes and 0.53 ms in the head's, a false `faster`
    (0.20) that pairing cannot cancel. They are gated only when named (--variants)."""
    from twolayer.variants import VARIANTS

    return [case for case in cases if not (case["variant"] in VARIANTS and VARIANTS[case["variant"]].distributed)]


def matched_cases(base_cases: list[dict], new_cases: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """The runnable cases both sides have (by what they time, not by test id), and those in one only."""
    key = lambda case: tuple(match_of(case).values())  # noqa: E731
    base_keys = {key(c): c for c in base_cases if not c["skip"]}
    new_keys = {key(c): c for c in new_cases if not c["skip"]}
    both = [{**new_keys[k], "base_id": base_keys[k]["id"]} for k in new_keys if k in base_keys]
    return (both, [c for k, c in base_keys.items() if k not in new_keys],
            [c for k, c in new_keys.items() if k not in base_keys])


class Remapped:
    """A side whose case ids differ from the driver's (a test id renamed between commits)."""

    def __init__(self, side: Side, ids: dict[str, str]) -> None:
        self.side, self.ids = side, ids

    def request(self, op: str, **fields) -> dict:
        if "case" in fields:
            fields["case"] = self.ids.get(fields["case"], fields["case"])
        return self.side.request(op, **fields)

    def close(self) -> None:
        self.side.close()


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


def gate_markdown(table: pd.DataFrame, threshold: float) -> str:
    """The verdicts as a Markdown table, changed benchmarks first: for a pull-request comment."""
    order = {"slower": 0, "faster": 1, "inconclusive": 2, "unchanged": 3, "only_in_base": 4, "only_in_new": 5}
    view = table.assign(_order=table["verdict"].map(order)).sort_values(["_order", *MATCH])
    lines = [f"### twolayer gate: {table['new_run_id'].iloc[0]} against {table['base_run_id'].iloc[0]}", "",
             "Paired, interleaved timing (ratio = head / base; 95% interval: a bootstrap over worker processes, "
             f"then builds); threshold "
             f"{threshold:.0%}.", "",
             "| verdict | device | variant | phase | dtype | size | base us | head us | ratio | interval | pairs |",
             "|---|---|---|---|---|---|---:|---:|---:|---|---:|"]
    for row in view.itertuples():
        if row.verdict.startswith("only_in"):
            lines.append(f"| {row.verdict} | {row.device} | {row.variant} | {row.phase} | {row.dtype} | {row.size} "
                         "| | | | | |")
            continue
        lines.append(f"| {row.verdict} | {row.device} | {row.variant} | {row.phase} | {row.dtype} | {row.size} | "
                     f"{row.base_median_s * 1e6:.1f} | {row.new_median_s * 1e6:.1f} | {row.ratio:.3f} | "
                     f"{row.ratio_low:.3f}-{row.ratio_high:.3f} | {row.pairs} |")
    reasons = [f"- {row.device} {row.variant} {row.phase}: {row.reason}" for row in view.itertuples()
               if isinstance(row.reason, str) and row.reason]
    return "\n".join(lines + ([""] + reasons if reasons else [])) + "\n"


def request_all(sides: list, op: str, **fields) -> list[dict]:
    """`op` to every side, all sent before any reply is read, so that worker processes answer in
    parallel; a side that cannot split a request (a scripted one) is asked in turn."""
    for side in sides:
        if hasattr(side, "send"):
            side.send(op, **fields)
    return [side.receive(op) if hasattr(side, "send") else side.request(op, **fields) for side in sides]


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
    if not (new_tree / "twolayer" / "gate_worker.py").is_file() or not (base_tree / "twolayer").is_dir():
        raise GateError(f"{base_tree if (new_tree / 'twolayer').is_dir() else new_tree} holds no twolayer checkout")
    if not (base_tree / "twolayer" / "gate_worker.py").is_file():
        raise GateError(f"the base tree {base_tree} predates the paired gate (no twolayer/gate_worker.py)")
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
