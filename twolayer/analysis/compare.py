"""`twolayer compare`: is a new run slower than a base run, beyond noise and a threshold?

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.analysis.compare".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from twolayer.disturbance import beyond_canary_margin
from twolayer.results.run_file import ResultsError
from twolayer.schema import MATCH as BENCHMARK_MATCH
from twolayer.schema import VERDICTS

MATCH = list(BENCHMARK_MATCH)  # a list: pandas reads a tuple of keys as one key
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
GATED_VERDICTS = ("slower", "faster", "unchanged", "inconclusive")
# Provenance that, when it differs, makes a comparison of apples and oranges.
PROVENANCE = ("machine", "cpu_model", "hardware", "cpu_isa", "gpu_model", "gpu_capability", "torch_threads",
              "numpy_threads", "torch_version", "numpy_version", "cuda_version", "torch_blas", "numpy_blas",
              "python_version", "suite_version")
WITHIN_RUN = "within-run"
BETWEEN_RUNS = "between-runs"


@dataclass(frozen=True)
class RatioInterval:
    ratio: float
    low: float
    high: float
    kind: str = WITHIN_RUN


def bootstrap_medians(runs: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Medians of `BOOTSTRAP_RESAMPLES` hierarchical resamples: runs drawn with replacement first,
    then timings within each drawn run, so that run-to-run drift widens the interval too.
    (scipy.stats.bootstrap resamples flat samples only; this two-level draw is what it lacks.)"""
    medians = np.empty(BOOTSTRAP_RESAMPLES)
    for i in range(BOOTSTRAP_RESAMPLES):
        drawn = rng.integers(len(runs), size=len(runs))
        medians[i] = np.median(np.concatenate([rng.choice(runs[r], runs[r].size) for r in drawn]))
    return medians


def _ratio_of_medians(new: np.ndarray, base: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(new, axis=axis) / np.median(base, axis=axis)


def median_ratio_interval(base: list[np.ndarray], new: list[np.ndarray], seed: int = 0) -> RatioInterval:
    """Median(new) / median(base) over the pooled timings of each side's runs, with a 95% interval
    (seeded: the same files always give the same verdict)."""
    ratio = float(np.median(np.concatenate(new)) / np.median(np.concatenate(base)))
    if len(base) > 1 and len(new) > 1:
        rng = np.random.default_rng(seed)
        ratios = bootstrap_medians(new, rng) / bootstrap_medians(base, rng)
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(ratios, [tail, 100 - tail])
        return RatioInterval(ratio, float(low), float(high), BETWEEN_RUNS)
    low, high = bca_interval((np.concatenate(new), np.concatenate(base)), _ratio_of_medians, seed)
    return RatioInterval(ratio, low, high, WITHIN_RUN)


def bca_interval(samples: tuple[np.ndarray, ...], statistic, seed: int = 0) -> tuple[float, float]:
    """scipy's BCa bootstrap interval of `statistic`; the percentile interval where BCa is undefined
    (every resample equal, as with timings that are all one clock tick)."""
    if all(np.ptp(sample) == 0 for sample in samples):
        value = float(statistic(*samples))
        return value, value
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # BCa undefined (a run set against itself, say) warns and gives NaNs: the percentile interval then
        warnings.simplefilter("ignore", getattr(stats, "DegenerateDataWarning", RuntimeWarning))
        for method in ("BCa", "percentile"):
            result = stats.bootstrap(samples, statistic, method=method, n_resamples=BOOTSTRAP_RESAMPLES,
                                     confidence_level=CONFIDENCE, vectorized=True, random_state=seed, batch=250)
            low, high = result.confidence_interval
            if np.isfinite(low) and np.isfinite(high):
                return float(low), float(high)
    value = float(statistic(*samples))
    return value, value


def finite(interval: RatioInterval) -> bool:
    return bool(np.isfinite((interval.ratio, interval.low, interval.high)).all())


def verdict(interval: RatioInterval, threshold: float) -> str:
    if not finite(interval):
        return "inconclusive"
    if interval.low > 1 + threshold:
        return "slower"
    if interval.high < 1 / (1 + threshold):
        return "faster"
    if interval.low >= 1 / (1 + threshold) and interval.high <= 1 + threshold:
        return "unchanged"
    return "inconclusive"


def straddle_reason(interval: RatioInterval, threshold: float) -> str:
    """Why `verdict` could not decide on `interval`."""
    span = f"{interval.ratio:.3f} ({interval.low:.3f}-{interval.high:.3f})"
    if not finite(interval):
        return f"no estimate or interval could be computed: {span}"
    if interval.ratio > 1 + threshold or interval.ratio < 1 / (1 + threshold):
        return (f"the estimate {span} is beyond the {threshold:.0%} threshold, but the interval reaches back within "
                "it: too noisy to decide")
    return (f"the estimate {span} is within the {threshold:.0%} threshold, but the interval reaches beyond it: "
            "too noisy to decide")


def recorded(column: pd.Series) -> set[str]:
    """The values a column holds, as text; a count read as a float (a column with gaps) as the
    integer it is, so 4.0 and 4 are one value."""
    return {str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in column.dropna()}


def provenance_differences(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """What differs between the sides beyond the code: each a reason to doubt a verdict."""
    differences = []
    for column in PROVENANCE:
        if column not in base or column not in new:
            continue
        before, after = recorded(base[column]), recorded(new[column])
        if before != after:
            differences.append(f"{column} differs: {', '.join(sorted(before)) or '(not recorded)'} vs "
                               f"{', '.join(sorted(after)) or '(not recorded)'}")
    return differences


@dataclass(frozen=True)
class MachineSpeed:
    """How fast the machine ran in each side's runs: the median over a side's runs of each run's
    usual canary (`run_canary_s`), and their ratio, new over base."""

    base_canary_s: float
    new_canary_s: float

    @property
    def ratio(self) -> float:
        return self.new_canary_s / self.base_canary_s

    @property
    def changed(self) -> bool:
        return beyond_canary_margin(self.ratio)

    def could_have_made(self, interval: RatioInterval, threshold: float) -> bool:
        """Whether the machine's change of speed could have made the verdict on `interval`: the
        interval with that change divided out gives another one."""
        if not self.changed:
            return False
        r = self.ratio
        without = RatioInterval(interval.ratio / r, interval.low / r, interval.high / r, interval.kind)
        return verdict(without, threshold) != verdict(interval, threshold)

    def describe(self) -> str:
        slower_side, times = ("new", self.ratio) if self.ratio > 1 else ("base", 1 / self.ratio)
        return (f"the machine itself ran {times:.2f}x slower in the {slower_side} run(s) (usual canary "
                f"{self.new_canary_s * 1e6:.0f} us new, {self.base_canary_s * 1e6:.0f} us base)")


def machine_speed(base: pd.DataFrame, new: pd.DataFrame) -> MachineSpeed | None:
    """The sides' machine speeds, where both were measured on the same hardware with the same
    threads (elsewhere the canaries are not comparable, and `compare` warns of the difference)."""
    same = ("hardware", "torch_threads", "numpy_threads")
    if any(recorded(base[c]) != recorded(new[c]) for c in same):
        return None
    levels = [side.groupby(["run_id", "machine"], sort=False)["run_canary_s"].first().dropna() for side in (base, new)]
    if any(level.empty for level in levels):
        return None
    return MachineSpeed(float(levels[0].median()), float(levels[1].median()))


def pool_runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark, its raw timings pooled across the runs (and passes) given for one side.

    A run in which the benchmark was disturbed is left out; `disturbed_runs` counts those, and a
    benchmark with no calm run left has no timings (`raw_runs` empty)."""
    rows = []
    for key, group in table.groupby(MATCH, dropna=False, sort=False):
        calm = group[~group["disturbed"].fillna(False).astype(bool)]
        runs = [np.asarray(timings, dtype=float) for passes in calm["raw_passes"] for timings in passes]
        if any(run.size == 0 for run in runs):
            empty = next(source for source, passes in zip(calm["source"], calm["raw_passes"])
                         if any(len(timings) == 0 for timings in passes))
            raise ResultsError(f"{empty}: benchmark {group['benchmark'].iloc[0]} has no raw timings (stats.data) "
                               "to compare")
        rows.append({**dict(zip(MATCH, key)), "raw_runs": runs, "benchmark": group["benchmark"].iloc[0],
                     "disturbed_runs": len(group) - len(calm), "runs": len(group),
                     "canary_ratio": group["canary_ratio"].max(), "others_running": group["others_running"].max(),
                     "median_s": float(np.median(np.concatenate(runs))) if runs else float(group["median_s"].median())})
    return pd.DataFrame(rows)


def compare_tables(base: pd.DataFrame, new: pd.DataFrame, threshold: float,
                   speed: MachineSpeed | None = None) -> pd.DataFrame:
    """One row per benchmark in either side; those in only one are listed with that verdict.

    Each side may hold several runs of the same code: their raw timings are pooled."""
    base_ids, new_ids = "+".join(base["run_id"].unique()), "+".join(new["run_id"].unique())
    speed = speed or machine_speed(base, new)
    merged = pool_runs(base).merge(pool_runs(new), on=MATCH, how="outer", suffixes=("_base", "_new"), indicator=True)
    rows = []
    for _, row in merged.iterrows():
        record = {c: row[c] for c in MATCH}
        record |= {"base_median_s": row["median_s_base"], "new_median_s": row["median_s_new"],
                   "ratio": np.nan, "ratio_low": np.nan, "ratio_high": np.nan, "interval_kind": "", "reason": ""}
        timed_both = row["_merge"] == "both" and bool(row["raw_runs_base"]) and bool(row["raw_runs_new"])
        if timed_both:
            interval = median_ratio_interval(row["raw_runs_base"], row["raw_runs_new"])
            record |= {"ratio": interval.ratio, "ratio_low": interval.low, "ratio_high": interval.high,
                       "interval_kind": interval.kind}
        if row["_merge"] != "both":
            record["verdict"] = "only_in_base" if row["_merge"] == "left_only" else "only_in_new"
        elif row["phase"] == "overhead":
            # the harness's own rows are tens of nanoseconds, a few clock ticks: shown, never gated,
            # disturbed or not
            record["verdict"] = "harness"
        elif not timed_both:
            side = "base" if not row["raw_runs_base"] else "new"
            others = row[f"others_running_{side}"]
            sharing = f"; {others:.0f} other threads runnable" if pd.notna(others) and others else ""
            record |= {"verdict": "inconclusive",
                       "reason": f"disturbed in every {side} run (canary {row[f'canary_ratio_{side}']:.2f}x the "
                                 f"reference{sharing}): the machine was busy; rerun on a quiet machine or use the "
                                 "paired gate"}
        else:
            record["verdict"] = verdict(interval, threshold)
            if record["verdict"] == "inconclusive":
                record["reason"] = straddle_reason(interval, threshold)
            if speed is not None and speed.could_have_made(interval, threshold):
                made = record["verdict"]
                record |= {"verdict": "inconclusive",
                           "reason": f"{made} at {interval.ratio:.3f} ({interval.low:.3f}-"
                                     f"{interval.high:.3f}), but {speed.describe()}: the machine could have made "
                                     "it; time both sides alternately, or use the paired gate"}
            left_out = int(row["disturbed_runs_base"] + row["disturbed_runs_new"])
            if left_out:
                record["reason"] = "; ".join(filter(None, [record["reason"], f"{left_out} disturbed run(s) left out"]))
        rows.append(record)
    out = pd.DataFrame(rows)
    out.insert(0, "new_run_id", new_ids)
    out.insert(0, "base_run_id", base_ids)
    out["machine_ratio"] = speed.ratio if speed is not None else np.nan
    out["threshold"] = threshold
    order = {v: i for i, v in enumerate(VERDICTS)}
    out["_order"] = out["verdict"].map(order)
    return out.sort_values(["_order", *MATCH], na_position="first").drop(columns="_order").reset_index(drop=True)
