"""Two counted runs set against each other, metric by metric: a deterministic count needs no
bootstrap, only a threshold above the spread of repeated counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twolayer.schema import KEY, METRICS


def compare_counters(base: pd.DataFrame, new: pd.DataFrame, metric: str, threshold: float) -> pd.DataFrame:
    """Per benchmark in both, the ratio of a deterministic metric (new / base) and its verdict:
    no bootstrap (the count does not vary from call to call), and a threshold above the spread of
    repeated counts, which is the metric's only noise."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    columns = [*KEY, metric]
    merged = base[columns].merge(new[columns], on=list(KEY), how="outer", suffixes=("_base", "_new"), indicator=True)
    rows = []
    for row in merged.to_dict("records"):
        old, now = row[f"{metric}_base"], row[f"{metric}_new"]
        if row["_merge"] != "both":
            verdict, ratio = ("only_in_base" if row["_merge"] == "left_only" else "only_in_new"), np.nan
        elif pd.isna(old) or pd.isna(now):
            verdict, ratio = "not_counted", np.nan
        elif old == 0:
            verdict, ratio = ("unchanged" if now == 0 else "slower"), (1.0 if now == 0 else np.inf)
        else:
            ratio = now / old
            verdict = "slower" if ratio > 1 + threshold else "faster" if ratio < 1 / (1 + threshold) else "unchanged"
        rows.append({**{k: row[k] for k in KEY}, "metric": metric, "base": old, "new": now, "ratio": ratio,
                     "verdict": verdict, "threshold": threshold})
    return pd.DataFrame(rows)
