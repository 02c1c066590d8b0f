"""`twolayer history`: each benchmark's median across commits, where it changed, and why.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.analysis.history".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twolayer.analysis.compare import MATCH
from twolayer.disturbance import beyond_canary_margin
from twolayer.flops import PHASES
from twolayer.results.run_file import ResultsError, read_run
from twolayer.results.table import tidy_table
from twolayer.schema import METRICS

BENCHMARK = list(MATCH)  # a benchmark's keys, as compare matches them
HARDWARE = ["hardware", "cpu_model", "gpu_model"]
VERSIONS = ["torch_version", "numpy_version", "python_version", "cuda_version"]
COUNTERS = list(METRICS)
HISTORY_COLUMNS = [*BENCHMARK, "commit_index", "commit", "commit_time", "median_s", "q1_s", "q3_s", "spread", "runs",
                   "disturbed", "run_canary_s", *COUNTERS, *HARDWARE, *VERSIONS]
CHANGE_COLUMNS = [*BENCHMARK, "commit", "commit_index", "previous_commit", "step", "before_median_s",
                  "after_median_s", "machine_step", "confidence", "cause"]

MIN_SEGMENT = 2  # commits on each side of a change: one commit alone is an outlier until the next agrees
# A split this good arises by chance in at most 3% of series with no change (a bump, two changes,
# 1.5%); inside a segment already split (each split opens more searches) in at most 0.5%.
# Calibrated on synthetic histories of 12 commits (README): 3-4% of flat ones get a change point.
ALPHA = 0.03
ALPHA_WITHIN = 0.005
NULL_SAMPLES = 20_000  # simulated no-change series per length: p-values down to 5e-5
NULL_WORK = 20_000_000  # values computed per chunk of the simulation (memory), and the cap on a long series' samples
MIN_STEP = 0.01  # a step below 1% is not reported even where the series is noise-free (counters, float rounding)


class HistoryError(ValueError):
    """A history that cannot be built, with the reason in one line."""


def find_runs(paths: list[Path]) -> list[Path]:
    """Every pytest-benchmark JSON named, or found as `benchmarks.json` under a folder named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("benchmarks.json"))
        elif path.is_file():
            found.append(path)
        else:
            raise HistoryError(f"{path}: no such file or folder")
    if not found:
        raise HistoryError(f"no runs (benchmarks.json) under {', '.join(str(p) for p in paths)}")
    return list(dict.fromkeys(found))


def commit_of(path: Path, run: dict) -> tuple[str, pd.Timestamp]:
    """The commit a run measured and that commit's time, from the run's own provenance."""
    info = run.get("commit_info") or {}
    commit, when = info.get("id"), info.get("time") or info.get("author_time")
    if not isinstance(commit, str) or not commit or not isinstance(when, str):
        raise HistoryError(f"{path}: the run records no commit and commit time (commit_info.id, commit_info.time); "
                           "it cannot be placed in a history")
    try:
        stamp = pd.Timestamp(when)
    except ValueError:
        raise HistoryError(f"{path}: commit_info.time {when!r} is not a time") from None
    # a run of uncommitted changes measured no commit: a point of its own, just after its commit
    label = commit[:12] + ("-dirty" if info.get("dirty") else "")
    return label, stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def load_history(paths: list[Path]) -> pd.DataFrame:
    """One row per benchmark per run (phases only), with its commit and commit time."""
    runs, commits = [], {}
    for path in find_runs(paths):
        try:
            run = read_run(path)
        except ResultsError as error:
            raise HistoryError(str(error) if str(path) in str(error) else f"{path}: {error}") from None
        commits[str(path)] = commit_of(path, run)
        runs.append((path, run))
    table = tidy_table(runs)
    table = table[table["phase"].isin(PHASES)].copy()
    found = [commits[source] for source in table["source"]]
    table["commit"] = [commit for commit, _ in found]
    table["commit_time"] = [when for _, when in found]
    return table


def pooled(columns: dict[str, np.ndarray], positions: np.ndarray) -> dict:
    """The pooled figures of one benchmark at one commit, from its rows' positions in `columns`:
    those of its calm runs, or of all its runs, marked `disturbed`, where none was calm."""
    calm = positions[~columns["disturbed"][positions]]
    disturbed = not calm.size
    positions = positions if disturbed else calm
    raw = columns["raw_s"]
    timings = [np.asarray(raw[p], dtype=float) for p in positions if len(raw[p])]
    pool = np.concatenate(timings) if timings else columns["median_s"][positions]
    q1, median, q3 = np.percentile(pool, [25, 50, 75])
    means = [np.nanmean(c) if np.isfinite(c).any() else np.nan for c in columns["counters"][positions].T]
    first = positions[0]
    canaries = columns["run_canary_s"][positions]
    return {"median_s": median, "q1_s": q1, "q3_s": q3, "spread": (q3 - q1) / median if median > 0 else np.nan,
            "runs": len(set(columns["run_id"][positions])), "disturbed": disturbed,
            "run_canary_s": level(canaries),
            **dict(zip(COUNTERS, means)),
            **{c: columns[c][first] for c in (*HARDWARE, *VERSIONS)}}


def history_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark per commit, commits in commit-time order (`commit_index` from 0)."""
    rows = rows.reset_index(drop=True)
    order = (rows[["commit", "commit_time"]].drop_duplicates("commit").sort_values(["commit_time", "commit"])
             .reset_index(drop=True))
    index = {commit: i for i, commit in enumerate(order["commit"])}
    columns = {c: rows[c].to_numpy() for c in ("raw_s", "median_s", "run_id", "commit_time", *HARDWARE, *VERSIONS)}
    columns["disturbed"] = rows["disturbed"].fillna(False).to_numpy(dtype=bool)
    columns["run_canary_s"] = pd.to_numeric(rows["run_canary_s"], errors="coerce").to_numpy(dtype=float)
    columns["counters"] = rows[COUNTERS].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    out = []
    for keys, positions in rows.groupby([*BENCHMARK, "commit"], sort=False, dropna=False).indices.items():
        out.append({**dict(zip([*BENCHMARK, "commit"], keys)), "commit_time": columns["commit_time"][positions[0]],
                    "commit_index": index[keys[-1]], **pooled(columns, positions)})
    table = pd.DataFrame(out, columns=HISTORY_COLUMNS)
    return table.sort_values([*BENCHMARK, "commit_index"], na_position="first").reset_index(drop=True)


def prefix_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running sums of the values and their squares along the last axis, each starting at 0."""
    zero = np.zeros((*values.shape[:-1], 1))
    return (np.concatenate([zero, np.cumsum(values, axis=-1)], axis=-1),
            np.concatenate([zero, np.cumsum(values**2, axis=-1)], axis=-1))


def squared_error(sums: np.ndarray, squares: np.ndarray, a, b) -> np.ndarray:
    """Sum of squared deviations from their mean of values[a:b] (a, b arrays of bounds)."""
    return (squares[..., b] - squares[..., a]) - (sums[..., b] - sums[..., a]) ** 2 / (b - a)


def gain(sums: np.ndarray, squares: np.ndarray, bounds: list[np.ndarray]) -> np.ndarray:
    """(SSE of the whole - SSE of the segments) / SSE of the segments, max over the candidate
    bounds: how much better the best segmentation fits. Scale-free."""
    n = sums.shape[-1] - 1
    whole = squared_error(sums, squares, np.array([0]), np.array([n]))
    edges = [np.zeros_like(bounds[0]), *bounds, np.full_like(bounds[0], n)]
    split = sum(squared_error(sums, squares, a, b) for a, b in zip(edges, edges[1:]))
    split = np.maximum(split, 0.0)
    return np.max((whole - split) / np.maximum(split, np.finfo(float).tiny), axis=-1)


def one_change_bounds(n: int) -> list[np.ndarray]:
    return [np.arange(MIN_SEGMENT, n - MIN_SEGMENT + 1)]


def two_change_bounds(n: int) -> list[np.ndarray]:
    """Every (i, j): a level from commit i that ends at commit j, at least `MIN_SEGMENT` a part."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = (i >= MIN_SEGMENT) & (j - i >= MIN_SEGMENT) & (n - j >= MIN_SEGMENT)
    return [i[keep], j[keep]]


BOUNDS = {1: one_change_bounds, 2: two_change_bounds}


def segmentation_gain(values: np.ndarray, changes: int) -> np.ndarray:
    sums, squares = prefix_sums(np.asarray(values, dtype=float))
    return gain(sums, squares, BOUNDS[changes](values.shape[-1]))


def best_bounds(values: np.ndarray, changes: int) -> list[int]:
    """Where one change (ruptures' binary segmentation) or two (its exact dynamic programming)
    fit best, by least squares: the indices where each new level starts."""
    import ruptures

    search = ruptures.Binseg if changes == 1 else ruptures.Dynp
    fitted = search(model="l2", min_size=MIN_SEGMENT, jump=1).fit(values.reshape(-1, 1))
    return [int(end) for end in fitted.predict(n_bkps=changes)[:-1]]


@functools.lru_cache(maxsize=128)
def null_gains(n: int, changes: int) -> np.ndarray:
    """`segmentation_gain` of series of n independent normal values, sorted: its distribution where
    nothing changed. The gain does not depend on the series' level or noise, so one simulation
    per length serves every benchmark (seeded: the same p-values every time). Long series with
    two changes get fewer samples (at least 2000), to bound the work."""
    chunk = max(1, NULL_WORK // max(len(BOUNDS[changes](n)[0]) * n, 1))  # series per chunk of NULL_WORK values
    samples = max(2000, min(NULL_SAMPLES, chunk))
    rng = np.random.default_rng(n * 10 + changes)
    gains = [segmentation_gain(rng.standard_normal((min(chunk, samples - done), n)), changes)
             for done in range(0, samples, chunk)]
    return np.sort(np.concatenate(gains))


def p_value(segment: np.ndarray, changes: int) -> float:
    """How often a series of this length with no change fits `changes` changes at least this well."""
    null = null_gains(len(segment), changes)
    exceeding = len(null) - np.searchsorted(null, float(segmentation_gain(segment, changes)), side="left")
    return (exceeding + 1) / (len(null) + 1)


def change_points(medians: np.ndarray, alpha: float = ALPHA, alpha_within: float = ALPHA_WITHIN
                  ) -> list[tuple[int, float]]:
    """(index where a new level starts, confidence) per change, in order.

    Binary segmentation: the best single split of a segment is kept if a split that good arises
    by chance with probability below `alpha` (`alpha_within` inside a segment already split):
    the likelihood-ratio test for one change in the mean of normal values with unknown noise,
    its null simulated (`null_gains`). Where one split is not enough, a level that comes and goes
    (two changes, a test of its own) is tried, since one split fits such a bump badly on either
    side; it is held to half the probability, so that the two tests together keep the rate of
    false changes. Every step kept is at least `MIN_STEP`; then each part is searched again. Confidence is
    one minus the test's probability. (A permutation test was tried first: on 12 commits it
    cannot reach 1% for a change 2 commits from either end, as there are only 66 ways to pick
    those 2.)"""
    values = np.log(np.asarray(medians, dtype=float))
    found: list[tuple[int, float]] = []

    def steps_large_enough(segment: np.ndarray, bounds: list[int]) -> bool:
        edges = [0, *bounds, len(segment)]
        levels = [segment[a:b].mean() for a, b in zip(edges, edges[1:])]
        return all(abs(b - a) >= math.log1p(MIN_STEP) for a, b in zip(levels, levels[1:]))

    def search(lo: int, hi: int, alpha: float) -> None:
        segment = values[lo:hi]
        if len(segment) < 2 * MIN_SEGMENT or np.ptp(segment) == 0:
            return
        for changes in (1, 2):
            if len(segment) < (changes + 1) * MIN_SEGMENT:
                return
            bounds = best_bounds(segment, changes)
            p = p_value(segment, changes)
            if p < alpha / changes and steps_large_enough(segment, bounds):
                found.extend((lo + at, 1.0 - p) for at in bounds)
                edges = [lo, *(lo + at for at in bounds), hi]
                for a, b in zip(edges, edges[1:]):
                    search(a, b, alpha_within)
                return

    search(0, len(values), alpha)
    return sorted(found)


def cause_of(before: pd.Series, after: pd.Series, step: float, machine_step: float = np.nan) -> str:
    """Why a benchmark stepped by `step` between the commits `before` and `after`, where the
    machine's usual canary stepped by `machine_step` between the segments around them."""
    def differs(columns: list[str]) -> bool:
        return any(not (pd.isna(before[c]) and pd.isna(after[c])) and before[c] != after[c] for c in columns)

    # the machine's change explains the step where, divided out, what is left is within its margin
    machine = beyond_canary_margin(machine_step) and not beyond_canary_margin(step / machine_step)
    return "hardware" if differs(HARDWARE) else "versions" if differs(VERSIONS) else "machine" if machine else "code"


def level(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else np.nan


def detect_changes(history: pd.DataFrame) -> pd.DataFrame:
    changes = []
    for keys, series in history.groupby(BENCHMARK, sort=False, dropna=False):
        series = series[~series["disturbed"].astype(bool)].sort_values("commit_index").reset_index(drop=True)
        medians = series["median_s"].to_numpy(dtype=float)
        canaries = series["run_canary_s"].to_numpy(dtype=float)
        found = change_points(medians)
        bounds = [0, *(at for at, _ in found), len(series)]
        for (lo, at, hi), (_, confidence) in zip(zip(bounds, bounds[1:], bounds[2:]), found):
            before, after = medians[lo:at], medians[at:hi]
            step = float(np.median(after) / np.median(before))
            machine_step = level(canaries[at:hi]) / level(canaries[lo:at])
            changes.append({**dict(zip(BENCHMARK, keys)), "commit": series.at[at, "commit"],
                            "commit_index": int(series.at[at, "commit_index"]),
                            "previous_commit": series.at[at - 1, "commit"], "step": step,
                            "before_median_s": float(np.median(before)), "after_median_s": float(np.median(after)),
                            "machine_step": machine_step, "confidence": confidence,
                            "cause": cause_of(series.iloc[at - 1], series.iloc[at], step, machine_step)})
    return pd.DataFrame(changes, columns=CHANGE_COLUMNS)


@dataclass
class History:
    table: pd.DataFrame
    changes: pd.DataFrame


def build_history(paths: list[Path]) -> History:
    table = history_table(load_history(paths))
    return History(table=table, changes=detect_changes(table))
