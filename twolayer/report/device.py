"""The report's section on what a GPU spends per call: device time beside wall time, the host's
share, the kernels launched and the launch floor they set, and the memory peak.

One table per run, device, dtype and size; only rows that measured device time (cuda) appear.
Then the figures the project's GPU targets are read from: `cuda_graph`'s iteration against
`torch_autograd`'s, and each eager variant's iteration over its launch floor.
"""

from __future__ import annotations

import pandas as pd

from twolayer.flops import PHASES
from twolayer.report.markdown import markdown_table

GRAPH_VARIANTS = ("cuda_graph", "torch_compile_graphs")


def device_rows(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["device_median_s"].notna() & summary["phase"].isin(PHASES)]


def device_table(rows: pd.DataFrame) -> pd.DataFrame:
    phase_order = {phase: i for i, phase in enumerate(PHASES)}
    rows = rows.sort_values(["variant", "phase"], key=lambda c: c.map(phase_order) if c.name == "phase" else c)
    return pd.DataFrame({
        "variant": rows["variant"],
        "phase": rows["phase"],
        "wall_us": rows["median_s"] * 1e6,
        "device_us": rows["device_median_s"] * 1e6,
        "host_share": rows["host_share"],
        "launches": rows["kernel_launches"],
        "kernels": rows["kernels"],
        "launch_floor_us": rows["launch_floor_s"] * 1e6,
        "over_floor": rows["median_s"] / rows["launch_floor_s"],
        "matmul_floor_us": rows["floor_s"] * 1e6,
        "peak_kib": rows["peak_bytes"] / 1024,
    })


def headline(rows: pd.DataFrame) -> list[str]:
    """The target figures, where the run has them: a line each."""
    lines = []
    iteration = rows[rows["phase"] == "iteration"].set_index("variant")["median_s"]
    for graph in GRAPH_VARIANTS:
        if graph in iteration and "torch_autograd" in iteration:
            lines.append(f"`{graph}` iteration {iteration[graph] * 1e6:.1f} us: "
                         f"{iteration['torch_autograd'] / iteration[graph]:.1f}x faster than `torch_autograd` "
                         f"({iteration['torch_autograd'] * 1e6:.1f} us)")
    return lines


def device_markdown(summary: pd.DataFrame, h2: str = "##") -> str:
    """report.md's section on cuda's wall and device time, launches and floors: empty when no benchmark has
    device figures."""
    measured = device_rows(summary)
    if measured.empty:
        return ""
    parts = [f"{h2} On the device: wall time, device time and launches",
             "`device_us`: the median CUDA-event span of the phase's own kernels, queued behind a spinning kernel "
             "so that the span holds no launch gaps (`twolayer/measure/device_time.py`); `host_share` = 1 - device / wall: "
             "the part of the call the device was not running the phase (dispatch, launches, the synchronisation). "
             "`launches`: the host's launch calls in one profiled call, `kernels` the device work they made; "
             "`launch_floor_us` = harness_sync + launches x (harness_launch - harness_sync), what the phase would "
             "cost with free kernels; `over_floor` = wall / launch floor. `matmul_floor_us`: the FLOPs at the "
             "measured matmul peak, where one was measured. `peak_kib`: the most device memory the phase held "
             "beyond what it held before it."]
    for (run_id, device, dtype, size), rows in measured.groupby(["run_id", "device", "dtype", "size"], sort=False):
        lines = headline(rows)
        parts += [f"{h2}# {device} ({rows['device_name'].iloc[0]}), {dtype}, {size}: run {run_id}",
                  *(["; ".join(lines) + "."] if lines else []),
                  markdown_table(device_table(rows), {"wall_us": "{:.1f}", "device_us": "{:.1f}",
                                                      "host_share": "{:.0%}", "launches": "{:.0f}",
                                                      "kernels": "{:.0f}", "launch_floor_us": "{:.1f}",
                                                      "over_floor": "{:.2f}", "matmul_floor_us": "{:.2f}",
                                                      "peak_kib": "{:.1f}"})]
    return "\n\n".join(parts)
