"""`twolayer compare`: is a new run slower than a base run, beyond noise and a threshold?

For each benchmark on both sides, the ratio of medians (new / base) gets a 95% bootstrap interval
from the raw timings. A benchmark is `slower` only when the whole interval lies above
1 + threshold, `faster` only when it lies below 1 / (1 + threshold), else `unchanged`: a shared
machine's noise widens the interval instead of reading as a regression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from twolayer.results import ResultsError

MATCH = ["device", "variant", "phase", "dtype", "size"]
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
VERDICTS = ("slower", "faster", "unchanged", "only_in_base", "only_in_new")  # the order of the report


@dataclass(frozen=True)
class RatioInterval:
    ratio: float
    low: float
    high: float


def median_ratio_interval(base: np.ndarray, new: np.ndarray, seed: int = 0) -> RatioInterval:
    """Median(new) / median(base), with a percentile bootstrap interval (seeded: repeatable)."""
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, (BOOTSTRAP_RESAMPLES, base.size)), axis=1)
    new_medians = np.median(rng.choice(new, (BOOTSTRAP_RESAMPLES, new.size)), axis=1)
    ratios = new_medians / base_medians
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioInterval(float(np.median(new) / np.median(base)), float(low), float(high))


def verdict(interval: RatioInterval, threshold: float) -> str:
    if interval.low > 1 + threshold:
        return "slower"
    if interval.high < 1 / (1 + threshold):
        return "faster"
    return "unchanged"


def pool_runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark, its raw timings pooled across the runs given for one side.

    Runs alternated with the other side's (base, new, base, new) then share the machine's drift."""
    rows = []
    for key, group in table.groupby(MATCH, dropna=False, sort=False):
        raw = tuple(t for timings in group["raw_s"] for t in timings)
        rows.append({**dict(zip(MATCH, key)), "raw_s": raw, "benchmark": group["benchmark"].iloc[0],
                     "median_s": float(np.median(raw)) if raw else group["median_s"].iloc[0]})
    return pd.DataFrame(rows)


def compare_tables(base: pd.DataFrame, new: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per benchmark in either side; those in only one are listed with that verdict.

    Each side may hold several runs of the same code: their raw timings are pooled."""
    base_ids, new_ids = "+".join(base["run_id"].unique()), "+".join(new["run_id"].unique())
    merged = pool_runs(base).merge(pool_runs(new), on=MATCH, how="outer", suffixes=("_base", "_new"), indicator=True)
    rows = []
    for _, row in merged.iterrows():
        record = {c: row[c] for c in MATCH}
        record |= {"base_median_s": row["median_s_base"], "new_median_s": row["median_s_new"]}
        if row["_merge"] != "both":
            record |= {"ratio": np.nan, "ratio_low": np.nan, "ratio_high": np.nan,
                       "verdict": "only_in_base" if row["_merge"] == "left_only" else "only_in_new"}
        else:
            base_raw, new_raw = np.asarray(row["raw_s_base"]), np.asarray(row["raw_s_new"])
            if base_raw.size == 0 or new_raw.size == 0:
                raise ResultsError(f"benchmark {row['benchmark_new']} has no raw timings to compare")
            interval = median_ratio_interval(base_raw, new_raw)
            record |= {"ratio": interval.ratio, "ratio_low": interval.low, "ratio_high": interval.high,
                       "verdict": verdict(interval, threshold)}
        rows.append(record)
    out = pd.DataFrame(rows)
    out.insert(0, "new_run_id", new_ids)
    out.insert(0, "base_run_id", base_ids)
    out["threshold"] = threshold
    order = {v: i for i, v in enumerate(VERDICTS)}
    out["_order"] = out["verdict"].map(order)
    return out.sort_values(["_order", *MATCH], na_position="first").drop(columns="_order").reset_index(drop=True)
