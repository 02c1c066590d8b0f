"""`twolayer run`: time the selection per phase into a new run directory, then report it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from twolayer.cases import SWEEP_PHASES, SWEEP_SIZES
from twolayer.cli.args import (
    add_counting_options,
    add_selection_options,
    count_options,
    non_negative_int,
    os_error_text,
    positive_float,
    positive_int,
    world_sizes,
)
from twolayer.count.callgrind import CountError
from twolayer.count.driver import count_selection
from twolayer.report.answer import answer_lines
from twolayer.report.page import build_report, write_report
from twolayer.results.run_file import ResultsError
from twolayer.results.table import load_runs
from twolayer.run.driver import run_suite
from twolayer.run.options import RunFailed, RunInterrupted, RunOptions
from twolayer.schema import RESULT_FILE
from twolayer.stopping import interrupt_exit, interrupt_word, terminate_as_interrupt
from twolayer.variants.ddp import DEFAULT_COLLECTIVE_TIMEOUT_S


def add_parser(commands) -> None:
    """`twolayer run`'s options: the selection, timing, passes, distributed ranks, output and counting."""
    running = commands.add_parser(
        "run", help="benchmark every variant per phase on the devices present; write results/<run id>/")
    add_selection_options(running)
    running.add_argument("--threads", type=positive_int, help="torch and BLAS threads (default: torch's; recorded either way)")
    running.add_argument("--budget-s", type=positive_float, help="seconds of timing per benchmark (default: 1)")
    running.add_argument("--sweep", action="store_true",
                         help=f"the size sweep: --sizes {','.join(SWEEP_SIZES)} and --phases iteration, unless given")
    running.add_argument("--quick", action="store_true", help="a short run, seconds in all (for CI smoke tests)")
    running.add_argument("--repeat", type=positive_int, default=1, metavar="K",
                         help="K passes over the selection, each in its own shuffled order; reports show the "
                              "between-pass spread (default: 1)")
    running.add_argument("--shuffle-seed", type=non_negative_int, default=None,
                         help="seed of the passes' order (default: random; recorded in the JSON)")
    running.add_argument("--retimes", type=non_negative_int, default=2,
                         help="time benchmarks disturbed by other work again, at most this often (default: 2)")
    running.add_argument("--world-size", type=world_sizes, default=None, metavar="W[,W...]",
                         help="time the distributed variants (ddp) with W ranks on this machine, one launch per W "
                              "(e.g. 1,2); default: in this process, a world of one")
    running.add_argument("--scaling", choices=("strong", "weak"), default=None,
                         help="ddp: strong splits the batch of N rows across the ranks (default), weak gives each N")
    running.add_argument("--collective-timeout-s", type=positive_float, default=DEFAULT_COLLECTIVE_TIMEOUT_S,
                         help="ddp: a rank that died or hung fails the run after this many seconds "
                              f"(default: {DEFAULT_COLLECTIVE_TIMEOUT_S:g})")
    running.add_argument("--out", default="results", help="where run directories go (default: results)")
    running.add_argument("--verbose", action="store_true",
                         help="also print pytest-benchmark's own tables (wide, sorted by mean)")
    running.add_argument("--no-report", action="store_true", help="write only the JSON, no CSV reports")
    running.add_argument("--no-peak", action="store_true", help="skip the matmul peak (no %% of peak in the reports)")
    running.add_argument("--counters", action="store_true",
                         help="also count instructions, aten ops and bytes per benchmark (`twolayer count`), "
                              "into the same run directory")
    add_counting_options(running)
    running.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the suite (`run_suite`), count it where asked and write its report; exit 1 on a failed run, 130 on
    an interrupt (what finished is kept)."""
    sizes, phases = args.sizes, args.phases
    if args.sweep:
        sizes, phases = sizes or ",".join(SWEEP_SIZES), phases or ",".join(SWEEP_PHASES)
    options = RunOptions(variants=args.variants, devices=args.devices, phases=phases, dtypes=args.dtypes,
                         sizes=sizes, threads=args.threads, budget_s=args.budget_s, quick=args.quick,
                         out=Path(args.out), peak=not args.no_peak, repeat=args.repeat, shuffle_seed=args.shuffle_seed,
                         retimes=args.retimes, world_sizes=args.world_size, scaling=args.scaling,
                         collective_timeout_s=args.collective_timeout_s, verbose=args.verbose)
    counting = None
    if args.counters:  # the same selection (its distributed variants are timed, not counted)
        counting = count_options(args, Path(args.out), phases=phases, sizes=sizes, quick=args.quick)
    try:
        with terminate_as_interrupt():  # a cancelled CI job's SIGTERM keeps what had finished, as Ctrl-C does
            run_dir = run_suite(options)
        if run_dir is None:  # a rank other than 0 of a torchrun job
            print(f"rank {os.environ.get('RANK')}: done; rank 0 writes the results")
            return 0
    except RunFailed as error:
        print(f"twolayer run: error: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        if stop.kept is None:
            print(f"twolayer run: {interrupt_word()} before any benchmark was saved; nothing was kept", file=sys.stderr)
        else:
            print(f"twolayer run: {interrupt_word()}; the {stop.finished} finished benchmarks are kept, marked "
                  f"interrupted, in {stop.kept / RESULT_FILE}", file=sys.stderr)
        return interrupt_exit()
    print(f"results: {run_dir / RESULT_FILE}")
    if counting is not None:
        try:
            count_selection(counting, run_dir=run_dir)
        except (CountError, ValueError) as error:
            print(f"twolayer run: error: the timings are kept in {run_dir}, but they could not be counted: {error}",
                  file=sys.stderr)
            return 1
        print(f"counters: {run_dir / 'counters.json'}")
    try:
        report = build_report(load_runs([run_dir / RESULT_FILE]), charts=not args.no_report)  # the answer needs none
        if not args.no_report:
            written = write_report(report, run_dir)
            print(f"report: {run_dir / 'report.md'} ({len(written)} files: summary.csv, comparison.csv, devices.csv, ...)")
    except (ResultsError, OSError) as error:
        print(f"twolayer run: error: the results are kept, but no report could be made: {os_error_text(error)}",
              file=sys.stderr)
        return 1
    print("\n" + "\n".join(answer_lines(report.summary)))
    return 0
