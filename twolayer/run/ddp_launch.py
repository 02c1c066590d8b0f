"""The ranks of a distributed run on this machine, started by torch's own launcher (the engine of
`torchrun --standalone`): `python -m twolayer.run.ddp_launch --world-size W --log-dir D -- <pytest args>`.

Every rank runs the same pytest session (`twolayer.run.rank_pytest`), so their benchmarks, and the
collectives inside them, come in one order. The rendezvous listens on a port the system picks
(`localhost:0`, as `torchrun --standalone` does), so a port already taken is never a problem.
Rank 0 writes to this process's stdout; the others to files in the log directory. When a rank
fails (it died, or a collective timed out waiting for a peer that hung), the launcher stops the
others and this process prints one line naming the rank, then exits 1: nothing is left running.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import uuid
from pathlib import Path

from twolayer.run.rank_pytest import ERRORS_DIR, JOINING, error_file

FAILED_EXIT = 1


def rank_error(log_dir: Path, rank: int) -> str | None:
    """The first failure rank `rank` reported (`twolayer.run.rank_pytest`), one line; None if none."""
    path = error_file(log_dir, rank)
    return path.read_text(encoding="utf-8").strip()[:400] if path.is_file() else None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


TIMED_OUT = ("Timed out", "timed out", "Timeout", "timeout")


def failure_line(failures: dict, world_size: int, log_dir: Path) -> str:
    """One line for the rank that failed first (not one the launcher stopped with SIGTERM because
    another had failed, unless all were; the earliest, then the lowest rank) and why. Where that
    rank timed out waiting for a collective, the ranks that had not failed by themselves are the
    ones that hung (or died without a trace): they are named."""

    def first(item) -> tuple:
        rank, failure = item
        return (failure.exitcode == -signal.SIGTERM, failure.timestamp, rank)

    ordered = sorted(failures.items(), key=first)
    rank, failure = ordered[0]
    reason = rank_error(log_dir, rank)
    if reason and any(word in reason for word in TIMED_OUT):
        silent = [r for r in range(world_size) if r != rank and rank_error(log_dir, r) is None]
        if silent:
            where = "" if reason.startswith(JOINING) else " in a collective"
            return (f"twolayer run: rank(s) {', '.join(map(str, silent))} of {world_size} hung or died: rank {rank} "
                    f"timed out waiting for them{where} ({reason})")
    others = [r for r, _ in ordered[1:]]
    also = f"; then rank(s) {', '.join(map(str, others))} stopped" if others else ""
    return (f"twolayer run: rank {rank} of {world_size} failed ({describe_exit(failure.exitcode)})"
            f"{': ' + reason if reason else ''}{also}")


def launch(world_size: int, pytest_args: list[str], log_dir: Path, seconds_to_stop: int = 5) -> int:
    """Run the ranks; 0 when all passed, else print one line naming the failed rank and return 1.
    A rank still running when another failed gets SIGTERM, and SIGKILL `seconds_to_stop` later."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # its progress chatter, and its own report of a failed rank: this process prints one line for it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ[ERRORS_DIR] = str(log_dir)  # the ranks inherit it
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=world_size, run_id=str(uuid.uuid4()),
        rdzv_backend="c10d", rdzv_endpoint="localhost:0",  # a free port, chosen by the system
        max_restarts=0, monitor_interval=0.1, start_method="spawn", shutdown_timeout=seconds_to_stop,
        logs_specs=DefaultLogsSpecs(log_dir=str(log_dir), redirects={r: Std.ALL for r in range(1, world_size)}),
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "twolayer.run.rank_pytest", *pytest_args)
    except ChildFailedError as error:
        print(failure_line(error.failures, world_size, log_dir), file=sys.stderr, flush=True)
        return FAILED_EXIT
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twolayer.run.ddp_launch", description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return launch(args.world_size, pytest_args, args.log_dir)


if __name__ == "__main__":
    sys.exit(main())
