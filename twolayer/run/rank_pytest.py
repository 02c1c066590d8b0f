"""One rank of a distributed run (`twolayer.run.ddp_launch` starts one per rank): the suite's pytest
session, with rank 0's options as given and the others' stripped of what only rank 0 writes (the
JSON, the list of passed tests). Every rank stops at its first failure (`-x`): after a collective
has failed, every later one would wait out its timeout too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

RANK_ZERO_ONLY = ("--benchmark-json=", "--tl-passed-file=")
ERRORS_DIR = "TWOLAYER_RANK_ERRORS"  # set by twolayer.run.ddp_launch: where each rank leaves its first failure
JOINING = "joining the ranks: "  # how a failure before the first test begins (bench/conftest.py)


def error_file(folder: Path, rank: int) -> Path:
    """Where rank `rank` leaves its first failure, one line, for the launcher."""
    return Path(folder) / f"rank-{rank}.error"


class FirstFailure:
    """A pytest plugin: the first failing test's error, one line, into `<dir>/rank-<rank>.error`,
    for the launcher's one-line report."""

    def __init__(self, path: Path) -> None:
        self.path, self.written = path, False

    def pytest_runtest_logreport(self, report) -> None:
        if report.failed and not self.written:
            crash = getattr(report.longrepr, "reprcrash", None)
            message = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1]
            self.path.write_text(f"{report.nodeid}: {message.splitlines()[0] if message else ''}", encoding="utf-8")
            self.written = True


def record_failure(message: str) -> None:
    """This rank's failure outside any test (joining the ranks before the first one), one line,
    where `FirstFailure` would have put a test's: the launcher reads it the same way."""
    folder = os.environ.get(ERRORS_DIR)
    if folder:
        path = error_file(folder, int(os.environ.get("RANK", "0")))
        if not path.exists():
            path.write_text(message, encoding="utf-8")


def rank_arguments(args: list[str], rank: int) -> list[str]:
    if rank != 0:
        args = [arg for arg in args if not arg.startswith(RANK_ZERO_ONLY)]
        if "-p" in args and "twolayer.run.pytest_outcomes" in args:  # the plugin that writes the passed-tests file
            at = args.index("twolayer.run.pytest_outcomes")
            if args[at - 1] == "-p":
                del args[at - 1:at + 1]
    return [*args, "-x"]


def leave(code: int) -> None:
    """End this rank: after a clean session the ranks meet once more and take gloo down together;
    then the process ends without running C++ destructors, one of which aborts now and then
    ("terminate called without an active exception", a rank's exit code -6) when gloo's threads
    outlive the interpreter."""
    import torch.distributed as dist

    if dist.is_initialized() and code == 0:  # after a failure a peer may be gone or hung: no goodbyes
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    import pytest

    rank = int(os.environ.get("RANK", "0"))
    plugins = [FirstFailure(error_file(os.environ[ERRORS_DIR], rank))] if os.environ.get(ERRORS_DIR) else []
    leave(int(pytest.main(rank_arguments(sys.argv[1:], rank), plugins=plugins)))


if __name__ == "__main__":
    main()
