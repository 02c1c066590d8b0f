"""The verdicts of `twolayer compare` as Markdown, for a pull-request comment (`--markdown FILE`).

Changed benchmarks first (slower, faster, inconclusive), each with its ratio, its interval where
the metric has one (time) and its verdict; the unchanged ones as a count, so that the comment
stays short; then the link to the full report, where one is given.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from twolayer.schema import CHANGED_VERDICTS, MATCH, VERDICTS

ORDER = {verdict: i for i, verdict in enumerate(CHANGED_VERDICTS)}


def figure(value: float, form: str) -> str:
    """A number as `form`, or nothing where there is none (a side every run of which was disturbed)."""
    return form.format(value) if pd.notna(value) else ""


def verdict_markdown(table: pd.DataFrame, metric: str, threshold_pct: float, report_url: str | None = None) -> str:
    """Markdown of a compare table for a pull-request comment: a headline count, the changed benchmarks first,
    the unchanged as a count, and the link to the full report."""
    counts = table["verdict"].value_counts()
    slower = int(counts.get("slower", 0))
    headline = (f"**{slower} slower**" if slower else "nothing slower") + f" beyond {threshold_pct:g}% in {metric}"
    what = ("ratio = new / base of medians, with its 95% interval" if metric == "time"
            else f"ratio = new / base of {metric} per call (deterministic: no interval)")
    lines = [f"### twolayer compare: {headline}", "", f"{what}; " + ", ".join(
        f"{int(counts.get(v, 0))} {v}" for v in ("slower", "faster", "inconclusive", "unchanged")) + ".", ""]
    changed = table[table["verdict"].isin(CHANGED_VERDICTS)]
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


def verdict_text(table: pd.DataFrame, path: Path, threshold_pct: float) -> str:
    """The verdict table as text, the reasons of the undecided, and a one-line summary (`compare` and
    `gate` print it)."""
    lines = []
    view = table.assign(base_us=table["base_median_s"] * 1e6, new_us=table["new_median_s"] * 1e6)
    columns = ["verdict", "device", "variant", "phase", "dtype", "size", "base_us", "new_us", "ratio", "ratio_low",
               "ratio_high"]
    lines.append(view[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    for row in table[table["reason"].fillna("") != ""].itertuples():
        label = " ".join(str(v) for v in (row.device, row.variant, row.phase, row.dtype, row.size) if pd.notna(v))
        lines.append(f"  {row.verdict}: {label}: {row.reason}")
    counts = table["verdict"].value_counts()
    lines.append(f"compare: {path}; {counts.get('slower', 0)} slower, {counts.get('faster', 0)} faster, "
          f"{counts.get('inconclusive', 0)} inconclusive, {counts.get('unchanged', 0)} unchanged beyond "
          f"{threshold_pct:g}% (95% interval of the median ratio)")
    return "\n".join(lines)


def compare_files(path: Path, table: pd.DataFrame, markdown: str | None, report_url: str | None, metric: str,
                  threshold_pct: float) -> dict[Path, str]:
    """compare.csv, and where `markdown` names a file its Markdown: the files' contents, for one atomic write."""
    files = {path: table.to_csv(index=False)}
    if markdown:
        files[Path(markdown)] = verdict_markdown(table, metric, threshold_pct, report_url)
    return files


def gate_markdown(table: pd.DataFrame, threshold: float) -> str:
    """The verdicts as a Markdown table, changed benchmarks first: for a pull-request comment."""
    order = {verdict: i for i, verdict in enumerate(VERDICTS)}
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
