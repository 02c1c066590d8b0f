"""`twolayer compare`: is a new run slower than a base run, beyond noise and a threshold?

For each benchmark on both sides, the ratio of medians (new / base) gets a 95% bootstrap interval
from the raw timings (hierarchical when a side has several runs: runs, then timings within them).
A benchmark is `slower` only when the whole interval lies above
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
VERDICTS = ("slower", "faster", "unchanged", "harness", "only_in_base", "only_in_new")  # the order of the report
GATED_VERDICTS = ("slower", "faster", "unchanged")
# Provenance that, when it differs, makes a comparison of apples and oranges.
PROVENANCE = ("machine", "cpu_model", "gpu_model", "torch_threads", "numpy_threads", "torch_version", "numpy_version",
              "suite_version")


@dataclass(frozen=True)
class RatioInterval:
    ratio: float
    low: float
    high: float


def bootstrap_medians(runs: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Medians of `BOOTSTRAP_RESAMPLES` hierarchical resamples: runs drawn with replacement first,
    then timings within each drawn run, so that run-to-run drift widens the interval too."""
    medians = np.empty(BOOTSTRAP_RESAMPLES)
    for i in range(BOOTSTRAP_RESAMPLES):
        drawn = rng.integers(len(runs), size=len(runs)) if len(runs) > 1 else [0]
        medians[i] = np.median(np.concatenate([rng.choice(runs[r], runs[r].size) for r in drawn]))
    return medians


def median_ratio_interval(base: list[np.ndarray], new: list[np.ndarray], seed: int = 0) -> RatioInterval:
    """Median(new) / median(base) over the pooled timings of each side's runs, with a percentile
    bootstrap interval (seeded: the same files always give the same verdict)."""
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(new, rng) / bootstrap_medians(base, rng)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioInterval(float(np.median(np.concatenate(new)) / np.median(np.concatenate(base))), float(low), float(high))


def verdict(interval: RatioInterval, threshold: float) -> str:
    if interval.low > 1 + threshold:
        return "slower"
    if interval.high < 1 / (1 + threshold):
        return "faster"
    return "unchanged"


def provenance_differences(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """What differs between the sides beyond the code: each a reason to doubt a verdict."""
    differences = []
    for column in PROVENANCE:
        before, after = set(base[column].dropna().astype(str)), set(new[column].dropna().astype(str))
        if before != after:
            differences.append(f"{column} differs: {', '.join(sorted(before))} vs {', '.join(sorted(after))}")
    return differences


def pool_runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark, its raw timings pooled across the runs given for one side.

    Runs alternated with the other side's (base, new, base, new) then share the machine's drift."""
    rows = []
    for key, group in table.groupby(MATCH, dropna=False, sort=False):
        runs = [np.asarray(timings) for timings in group["raw_s"]]
        if any(run.size == 0 for run in runs):
            raise ResultsError(f"benchmark {group['benchmark'].iloc[0]} has no raw timings to compare")
        rows.append({**dict(zip(MATCH, key)), "raw_runs": runs, "benchmark": group["benchmark"].iloc[0],
                     "median_s": float(np.median(np.concatenate(runs)))})
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
            interval = median_ratio_interval(row["raw_runs_base"], row["raw_runs_new"])
            record |= {"ratio": interval.ratio, "ratio_low": interval.low, "ratio_high": interval.high,
                       # the harness's own rows are tens of nanoseconds, a few clock ticks: shown, never gated
                       "verdict": "harness" if row["phase"] == "overhead" else verdict(interval, threshold)}
        rows.append(record)
    out = pd.DataFrame(rows)
    out.insert(0, "new_run_id", new_ids)
    out.insert(0, "base_run_id", base_ids)
    out["threshold"] = threshold
    order = {v: i for i, v in enumerate(VERDICTS)}
    out["_order"] = out["verdict"].map(order)
    return out.sort_values(["_order", *MATCH], na_position="first").drop(columns="_order").reset_index(drop=True)
