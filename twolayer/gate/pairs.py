"""The pairs of one benchmark: base and head block medians, the pairs no co-tenant hit, and the interval of their ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from twolayer.analysis.compare import (
    CONFIDENCE,
    RatioInterval,
    bca_interval,
    bootstrap_medians,
)

PAIRED = "paired-blocks"


# A block this much slower than its side's lower quartile of blocks was hit by a co-tenant: on two
# cores a second multi-threaded process turns a 0.2 ms call into 8-70 ms now and then, one block at
# a time, on either side. Pairs with a hit block are left out of the statistic (and counted).
HIT_RATIO = 1.5


MIN_CLEAN_INSTANCES = 4  # fewer instances with a clean pair: nothing to decide on


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
