"""The answer a run was made for, in a few lines: per device, dtype and size, the fastest variant of
each phase, its median, and how much slower the slowest is; then whether the run can be trusted.
`twolayer run` prints it after its paths, and report.md opens with it."""

from __future__ import annotations

import pandas as pd

from twolayer.flops import PHASES

GROUP = ["device", "dtype_mode", "size", "world_size"]


def flagged(row) -> str:
    """A variant's name with its noisy mark, as the tables mark it."""
    return f"{row.variant} (noisy)" if row.noisy is True or row.noisy == 1 else str(row.variant)


def phase_line(phase: str, rows: pd.DataFrame) -> str:
    """`phase: fastest NAME MEDIAN us; slowest NAME RATIOx` over the calm rows of one phase."""
    ranked = rows.sort_values("median_s")
    fastest, slowest = ranked.iloc[0], ranked.iloc[-1]
    line = f"  {phase:<9} fastest {flagged(fastest)} {fastest.median_s * 1e6:.1f} us"
    if len(ranked) > 1:
        line += f"; slowest {flagged(slowest)} {slowest.median_s / fastest.median_s:.1f}x slower"
    return line


def trust_line(benchmarks: pd.DataFrame) -> str:
    """Whether the run can be trusted: how many benchmarks were timed on a disturbed machine."""
    disturbed = benchmarks[benchmarks["disturbed"].eq(True)]
    if disturbed.empty:
        return f"trust: all {len(benchmarks)} benchmarks were timed on a calm machine"
    names = ", ".join(sorted(f"{r.variant} {r.phase}" for r in disturbed.head(4).itertuples()))
    more = f" and {len(disturbed) - 4} more" if len(disturbed) > 4 else ""
    return (f"trust: {len(disturbed)} of {len(benchmarks)} benchmarks were timed on a disturbed machine ({names}{more}):"
            " left out of the ranking above; rerun them on a quiet machine before trusting them")


def answer_lines(summary: pd.DataFrame) -> list[str]:
    """The answer of the runs in `summary` (the report's tidy table): a heading per device, dtype
    and size (and run, where there are several), a line per phase, and the trust line. Disturbed
    benchmarks are never ranked; a phase with none calm says so."""
    benchmarks = summary[summary["phase"] != "overhead"]
    if benchmarks.empty:
        return []
    runs = benchmarks["run_id"].nunique()
    lines = []
    for key, group in benchmarks.groupby(["run_id", *GROUP], sort=False, dropna=False):
        run_id, device, dtype, size, world_size = key
        ranks = f", {world_size} ranks" if world_size and world_size > 1 else ""
        lines.append(f"{device} {dtype} {size}{ranks}" + (f" (run {run_id})" if runs > 1 else "") + ":")
        for phase in [p for p in PHASES if p in set(group["phase"])]:
            rows = group[group["phase"] == phase]
            calm = rows[~rows["disturbed"].eq(True)]
            lines.append(phase_line(phase, calm) if not calm.empty
                         else f"  {phase:<9} every benchmark disturbed: no ranking")
    return lines + [trust_line(benchmarks)]


def answer_markdown(summary: pd.DataFrame, h2: str = "##") -> str:
    """The answer as report.md's opening section."""
    lines = answer_lines(summary)
    if not lines:
        return ""
    return f"{h2} The answer\n\n```\n" + "\n".join(lines) + "\n```"
