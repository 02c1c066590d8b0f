"""`twolayer peak`: the matmul peak of each device and dtype."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twolayer.cases import split_list
from twolayer.cli.args import (
    UsageError,
    names,
    positive_int,
)
from twolayer.devices import available_devices, device_absent_reason
from twolayer.measure.peak import cache_path, cached_peaks
from twolayer.problem import DTYPES
from twolayer.provenance import set_threads


def add_parser(commands) -> None:
    peaking = commands.add_parser("peak", help="measure the matmul peak (GFLOP/s) of each device and dtype")
    peaking.add_argument("--devices", type=names, help="comma-separated (default: every one present)")
    peaking.add_argument("--dtypes", default="float32,float64", help="comma-separated (default: float32,float64)")
    peaking.add_argument("--threads", type=positive_int)
    peaking.add_argument("--out", default="results", help="where the per-machine cache goes (default: results)")
    peaking.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Measure and print the matmul peak of each device and dtype; a peak measured on a busy machine is
    printed, warned about, and not cached."""
    devices = split_list(args.devices) or tuple(available_devices())
    dtypes = split_list(args.dtypes)
    if not dtypes:
        raise UsageError(f"--dtypes names no dtype; choose from {', '.join(DTYPES)}")
    for device in devices:
        reason = device_absent_reason(device)
        if reason is not None:
            raise UsageError(reason)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if args.threads is not None:
        set_threads(args.threads)
    peaks = cached_peaks(Path(args.out), list(devices), list(dtypes), refresh=True)
    disturbed = [peak for peak in peaks.values() if peak.disturbed]
    if disturbed:
        print(f"twolayer peak: warning: the machine was busy while the peak was measured ({disturbed[0].state}); "
              "these figures are not a ceiling and were not cached", file=sys.stderr)
    print(f"{'device':<8} {'dtype':<8} {'square GFLOP/s':>15} {'problem GFLOP/s':>16}  by library (square)")
    for peak in peaks.values():
        libraries = ", ".join(f"{name} {gflops:.0f}" for name, gflops in peak.square_gflops_by_library.items())
        print(f"{peak.device:<8} {peak.dtype:<8} {peak.square_gflops:>15.1f} {peak.problem_gflops:>16.1f}  "
              f"{libraries}; {peak.device_name}, square {peak.square_n}, {peak.torch_threads} threads")
    if not disturbed:
        print(f"peak: {cache_path(Path(args.out))}")
    return 0
