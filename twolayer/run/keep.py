"""A run's JSON kept: merged across world sizes, or, at an interrupt, what had finished."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from twolayer.run.options import RunInterrupted
from twolayer.schema import PASSED_FILE, RESULT_FILE

OWNER_FILE = "owner.pid"  # in a run's .partial directory: the process writing it


def merge_runs(result: dict, more: dict) -> dict:
    """One run of the benchmarks of both: the first's machine and commit, the benchmarks of both."""
    result["benchmarks"].extend(more["benchmarks"])
    return result


def keep_result(result: dict, partial: Path, run_dir: Path) -> RunInterrupted:
    """After an interrupt between launches: keep what finished, marked interrupted."""
    finished = [bench for bench in result["benchmarks"] if bench["extra_info"].get("phase") != "overhead"]
    if not finished:
        return RunInterrupted(None, 0)
    result.setdefault("twolayer", {}).update(run_id=run_dir.name, interrupted=True)
    (partial / RESULT_FILE).write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
    (partial / PASSED_FILE).unlink(missing_ok=True)
    (partial / OWNER_FILE).unlink(missing_ok=True)
    os.replace(partial, run_dir)
    return RunInterrupted(run_dir, len(result["benchmarks"]))


def keep_finished(partial: Path, run_dir: Path) -> int:
    """After an interrupt: keep, in `run_dir`, the benchmarks whose tests passed, marked interrupted;
    return how many (0, and nothing kept, when no phase had finished or nothing was saved)."""
    try:
        result = json.loads((partial / RESULT_FILE).read_text(encoding="utf-8"))
        passed = set((partial / PASSED_FILE).read_text(encoding="utf-8").splitlines())
    except (OSError, ValueError):
        return 0  # nothing saved, or the save itself was cut short
    finished = [bench for bench in result.get("benchmarks") or [] if bench.get("fullname") in passed]
    if not any(bench["extra_info"].get("phase") != "overhead" for bench in finished):
        return 0  # the harness's own rows alone are not worth a run directory
    result["benchmarks"] = finished
    result.setdefault("twolayer", {}).update(run_id=run_dir.name, interrupted=True)
    (partial / RESULT_FILE).write_text(json.dumps(result, separators=(",", ":")) + "\n", encoding="utf-8")
    (partial / PASSED_FILE).unlink()
    (partial / OWNER_FILE).unlink(missing_ok=True)
    os.replace(partial, run_dir)
    return len(finished)



def claim_partial(partial: Path) -> None:
    """Make `partial` (a run's directory while it is written) and record this process as its owner."""
    partial.mkdir()
    (partial / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n", encoding="utf-8")


def owner_alive(partial: Path) -> bool | None:
    """Whether the process that was writing `partial` still runs; None where that cannot be told
    here: a writer on another host (an --out shared between machines), or one that did not say who
    it was (a run from before owners were recorded)."""
    try:
        host, pid_text = (partial / OWNER_FILE).read_text(encoding="utf-8").split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def clean_abandoned(out: Path) -> list[Path]:
    """Remove the .partial directories under `out` whose writer is gone (killed with SIGKILL, or
    its machine lost); return them. A partial whose writer still runs, or that names none, stays."""
    removed = []
    for partial in sorted(out.glob(".*.partial")):
        if partial.is_dir() and owner_alive(partial) is False:
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed
