"""`twolayer fidelity`: the suite's cpu medians against torch.utils.benchmark's Timer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from twolayer.cases import split_list
from twolayer.cli.args import (
    UsageError,
    names,
    positive_float,
    positive_int,
)
from twolayer.measure.canary import machine_state
from twolayer.provenance import set_threads
from twolayer.run.options import RunFailed
from twolayer.variants import VARIANTS, variant_device_reason


def add_parser(commands) -> None:
    fidelity = commands.add_parser(
        "fidelity", help="check the suite's cpu iteration medians against torch.utils.benchmark.Timer")
    fidelity.add_argument("--variants", type=names, help="comma-separated (default: all)")
    fidelity.add_argument("--threads", type=positive_int)
    fidelity.add_argument("--budget-s", type=positive_float, default=1.0, help="seconds per measurement (default: 1)")
    fidelity.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Time each cpu iteration with the suite and with torch.utils.benchmark's Timer and print their ratio; a
    busy machine before or after is a warning and marks the rows."""
    runnable = [name for name in VARIANTS if variant_device_reason(name, "cpu") is None and "iteration" in VARIANTS[name].phases]
    names = split_list(args.variants) or tuple(runnable)
    for name in names:
        if name not in VARIANTS:
            raise UsageError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        if name not in runnable:
            raise UsageError(f"{name} cannot run its iteration on the cpu here: {variant_device_reason(name, 'cpu')}")
    if args.threads is not None:
        set_threads(args.threads)
    from twolayer.run.fidelity import check_fidelity  # pytest and torch.utils.benchmark: only once the input is good

    before = machine_state(Path("results"))
    try:
        rows = check_fidelity(list(names), args.budget_s)
    except RunFailed as error:
        print(f"twolayer fidelity: error: {error}", file=sys.stderr)
        return 1
    after = machine_state(Path("results"))
    disturbed = before.busy or after.busy
    if disturbed:  # the two timers ran at different moments: a busy machine's moments differ
        print(f"twolayer fidelity: warning: the machine was busy (before: {before.describe()}; after: "
              f"{after.describe()}); a ratio may then compare two moments rather than two timers: rerun on a "
              "quiet machine", file=sys.stderr)
    print(f"{'variant':<20} {'suite_median_us':>16} {'timer_median_us':>16} {'ratio':>7}   ({torch.get_num_threads()} threads)")
    for row in rows:
        print(f"{row.variant:<20} {row.suite_median_s * 1e6:>16.1f} {row.timer_median_s * 1e6:>16.1f} {row.ratio:>7.3f}"
              + ("  (disturbed)" if disturbed else ""))
    return 0
