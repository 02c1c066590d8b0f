"""The counters as Markdown: the section of report.md, the ranking of what each framework adds over
hand-written torch, and a counters-only run directory's own summary.csv and report.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from twolayer.flops import PHASES
from twolayer.report.markdown import markdown_table
from twolayer.schema import EMPTY, METRICS


def framework_overhead(frame: pd.DataFrame, reference: str = "torch_manual") -> pd.DataFrame:
    """Per device, dtype and size: each variant's iteration instructions over the reference's (the
    hand-written torch iteration): what the framework's Python and dispatch add, ranked."""
    iteration = frame[(frame["phase"] == "iteration") & frame["instructions"].notna()]
    rows = []
    for (device, dtype, size), group in iteration.groupby(["device", "dtype", "size"]):
        base = group[group["variant"] == reference]
        if base.empty:
            continue
        reference_count = float(base["instructions"].iloc[0])
        for row in group.itertuples():
            rows.append({"device": device, "dtype": dtype, "size": size, "variant": row.variant,
                         "instructions": row.instructions, "added": row.instructions - reference_count,
                         "ratio": row.instructions / reference_count})
    if not rows:
        return pd.DataFrame(columns=["device", "dtype", "size", "variant", "instructions", "added", "ratio"])
    return pd.DataFrame(rows).sort_values(["device", "dtype", "size", "added"]).reset_index(drop=True)


def counters_markdown(frame: pd.DataFrame, h2: str = "##") -> str:
    """The counters section of report.md: per device, variant x phase; then the ranking."""
    counted = frame[frame[list(METRICS)].notna().any(axis=1)]
    if counted.empty:
        return ""
    parts = [f"{h2} Counters per call",
             "Deterministic counts, one thread (`twolayer count`): `instructions` from Valgrind's callgrind, "
             "in thousands (kinstr; on cuda the host's: Python, dispatch and the driver's launch path); "
             "`aten_ops`, the aten operators dispatched (torch variants only); `alloc_kib`, the most memory a "
             "call held beyond its start (on cuda, device memory); on cuda `launches`, the host's calls that queue "
             "device work, and `gpu_kernels`, the kernels, copies and memsets they made. Instructions are work, "
             "not time: memory-bound or parallel work costs more or less than they say."]
    for (device, dtype, size), group in counted[counted["phase"] != "overhead"].groupby(["device", "dtype", "size"]):
        view = group.assign(kinstr=group["instructions"] / 1e3, alloc_kib=group["alloc_bytes"] / 1024)
        shown = ["kinstr", "aten_ops", "alloc_kib"] + [m for m in ("launches", "gpu_kernels") if view[m].notna().any()]
        table = view.pivot_table(index="variant", columns="phase", values=shown, aggfunc="first", dropna=False)
        order = [p for p in PHASES if p in set(group["phase"])]
        flat = pd.DataFrame(index=table.index)
        for phase in order:
            for metric in shown:
                if (metric, phase) in table.columns:
                    flat[f"{phase} {metric}"] = table[(metric, phase)]
        flat = flat.reset_index()
        parts += [f"{h2}# {device} {dtype} {size}",
                  markdown_table(flat, {c: ("{:.0f}" if not c.endswith("kinstr") else "{:.1f}") for c in flat.columns
                                        if c != "variant"})]
    empty = counted[counted["variant"] == EMPTY]
    if not empty.empty:
        parts.append("The counting's own cost, an empty call counted the same way: " + "; ".join(
            f"{row.device} {row.instructions:.0f} instructions" for row in empty.itertuples()) + ".")
    ranking = framework_overhead(counted)
    if not ranking.empty:
        view = ranking.assign(kinstr=ranking["instructions"] / 1e3, added_kinstr=ranking["added"] / 1e3)
        parts += [f"{h2} Instructions each variant's iteration adds over torch_manual",
                  "The hand-written torch iteration is the reference: what a variant adds beyond it is Python, "
                  "dispatch, autograd and optimizer bookkeeping (negative: less work than the reference).",
                  markdown_table(view[["device", "dtype", "size", "variant", "kinstr", "added_kinstr", "ratio"]],
                                 {"kinstr": "{:.1f}", "added_kinstr": "{:+.1f}", "ratio": "{:.2f}"})]
    return "\n\n".join(parts)


def counters_report_files(frame: pd.DataFrame, out: Path) -> dict[Path, str]:
    """summary.csv and report.md of a counters-only run directory."""
    info = frame.iloc[0] if not frame.empty else None
    heading = "# twolayer counters report"
    where = "" if info is None else (f"Run `{info['run_id']}`: cpu {info['cpu_model']} ({info['hardware']}), torch "
                                      f"{info['torch_version']}, numpy {info['numpy_version']}, {info['valgrind']}, "
                                      f"commit {info['commit']}; {info['count_calls']} counted calls per benchmark.")
    return {out / "summary.csv": frame.to_csv(index=False),
            out / "report.md": "\n\n".join(filter(None, [heading, where, counters_markdown(frame)])) + "\n"}
