"""The verdicts of `twolayer compare` as Markdown, for a pull-request comment (`--markdown FILE`).

Changed benchmarks first (slower, faster, inconclusive), each with its ratio, its interval where
the metric has one (time) and its verdict; the unchanged ones as a count, so that the comment
stays short; then the link to the full report, where one is given.
"""

from __future__ import annotations

import pandas as pd

CHANGED = ("slower", "faster", "inconclusive", "only_in_base", "only_in_new")
ORDER = {verdict: i for i, verdict in enumerate(CHANGED)}


def figure(value: float, form: str) -> str:
    """A number as `form`, or nothing where there is none (a side every run of which was disturbed)."""
    return form.format(value) if pd.notna(value) else ""


def verdict_markdown(table: pd.DataFrame, metric: str, threshold_pct: float, report_url: str | None = None) -> str:
    counts = table["verdict"].value_counts()
    slower = int(counts.get("slower", 0))
    headline = (f"**{slower} slower**" if slower else "nothing slower") + f" beyond {threshold_pct:g}% in {metric}"
    what = ("ratio = new / base of medians, with its 95% interval" if metric == "time"
            else f"ratio = new / base of {metric} per call (deterministic: no interval)")
    lines = [f"### twolayer compare: {headline}", "", f"{what}; " + ", ".join(
        f"{int(counts.get(v, 0))} {v}" for v in ("slower", "faster", "inconclusive", "unchanged")) + ".", ""]
    changed = table[table["verdict"].isin(CHANGED)]
    changed = changed.assign(_order=changed["verdict"].map(ORDER)).sort_values(["_order", "device", "variant", "phase"])
    if changed.empty:
        lines.append("No benchmark changed beyond the threshold.")
    elif metric == "time":
        lines += ["| verdict | device | variant | phase | dtype | size | base us | new us | ratio | interval |",
                  "|---|---|---|---|---|---|---:|---:|---:|---|"]
        for row in changed.itertuples():
            numbers = ("| | | |" if row.verdict.startswith("only_in") else
                       f"| {row.base_median_s * 1e6:.1f} | {row.new_median_s * 1e6:.1f} | {figure(row.ratio, '{:.3f}')} | "
                       + (f"{row.ratio_low:.3f}-{row.ratio_high:.3f} |" if pd.notna(row.ratio_low) else " |"))
            lines.append(f"| {row.verdict} | {row.device} | {row.variant} | {row.phase} | {row.dtype} | {row.size} "
                         + numbers)
    else:
        lines += [f"| verdict | device | variant | phase | dtype | size | base {metric} | new {metric} | ratio |",
                  "|---|---|---|---|---|---|---:|---:|---:|"]
        for row in changed.itertuples():
            numbers = ("| | |" if row.verdict.startswith("only_in") else
                       f"| {row.base:,.0f} | {row.new:,.0f} | {row.ratio:.4f} |")
            lines.append(f"| {row.verdict} | {row.device} | {row.variant} | {row.phase} | {row.dtype} | {row.size} "
                         + numbers)
    reasons = [f"- {row.device} {row.variant} {row.phase}: {row.reason}" for row in changed.itertuples()
               if isinstance(getattr(row, "reason", None), str) and row.reason]
    if reasons:
        lines += ["", *reasons]
    if report_url:
        lines += ["", f"Full report: {report_url}"]
    return "\n".join(lines) + "\n"
