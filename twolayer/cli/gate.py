"""`twolayer gate`: paired, interleaved timing of two checkouts, and its verdicts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twolayer.cases import plan_cases
from twolayer.cli.args import (
    UsageError,
    add_selection_options,
    non_negative_int,
    positive_float,
    positive_int,
    selection_of,
)
from twolayer.gate.driver import GateOptions, run_gate
from twolayer.gate.workers import GateError
from twolayer.measure.canary import machine_state
from twolayer.provenance import PROJECT_ROOT, oversubscription, set_threads
from twolayer.report.verdicts import verdict_text


def add_parser(commands) -> None:
    gating = commands.add_parser(
        "gate", help="paired, interleaved timing of two checkouts; exit 1 when the head is significantly slower")
    gating.add_argument("base_tree", metavar="BASE_TREE", help="a checkout of the base commit (a git worktree)")
    gating.add_argument("--head", help="the checkout under test (default: this one)")
    add_selection_options(gating)
    gating.add_argument("--threads", type=positive_int, help="torch and BLAS threads on both sides")
    gating.add_argument("--threshold", type=positive_float, default=10.0, help="percent tolerated (default: 10)")
    gating.add_argument("--budget-s", type=positive_float, default=1.0,
                        help="seconds of timing per side and benchmark (default: 1)")
    gating.add_argument("--block-ms", type=positive_float, default=20.0,
                        help="milliseconds of rounds per block; blocks alternate between the sides (default: 20)")
    gating.add_argument("--retimes", type=non_negative_int, default=3,
                        help="extra timings, in fresh worker processes, for a benchmark that cannot be decided (default: 3)")
    gating.add_argument("--processes", type=positive_int, default=6,
                        help="worker processes per side; instances go round them (default: 6)")
    gating.add_argument("--out", default="results/gate", help="where compare.csv, gate.md and gate.json go")
    gating.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Check the trees and the selection, then gate them (`run_gate`); print the verdicts; exit 1 where the
    head is slower, 2 where the gate could not run."""
    base_tree, head_tree = Path(args.base_tree), Path(args.head) if args.head else PROJECT_ROOT
    for tree in (base_tree, head_tree):
        if not tree.is_dir():
            raise UsageError(f"{tree}: {'not a directory' if tree.exists() else 'no such directory'}")
    # a bad selection is refused here, in one line, before any worker starts or any file is written
    cases = plan_cases(args.variants, args.devices, args.phases, args.dtypes, args.sizes)
    runnable = [case for case in cases if case.skip_reason is None]
    if not runnable:
        reasons = "; ".join(sorted({case.skip_reason for case in cases}))
        raise UsageError(f"the selection matches no benchmark that can run here ({reasons})")
    out = Path(args.out)
    options = GateOptions(threshold=args.threshold / 100, block_s=args.block_ms / 1000, budget_s=args.budget_s,
                          retimes=args.retimes, processes=args.processes)
    selection = {**selection_of(args), "threads": args.threads}
    if args.threads is not None:
        set_threads(args.threads)
    too_many = oversubscription(args.threads)
    if too_many:
        print(f"twolayer gate: warning: {too_many}", file=sys.stderr, flush=True)
    state = machine_state(Path("results"))
    if state.busy:
        print(f"twolayer gate: note: the machine is busy ({state.describe()}); the paired timing cancels steady load, "
              "and a benchmark it cannot decide is reported inconclusive", file=sys.stderr, flush=True)
    try:
        table, warnings = run_gate(base_tree, head_tree, out, selection, options)
    except GateError as error:
        print(f"twolayer gate: error: {error}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"twolayer gate: warning: {warning}", file=sys.stderr)
    print(verdict_text(table, out / "compare.csv", args.threshold))
    print(f"gate: {out / 'gate.md'} (Markdown for a pull request), {out / 'gate.json'} (every pair)")
    return 1 if (table["verdict"] == "slower").any() else 0
