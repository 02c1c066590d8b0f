"""Benchmarks timed on a disturbed machine, timed again once it is calm."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

from twolayer.disturbance import calmer, disturbed_benchmarks
from twolayer.measure.canary import MachineState, machine_state
from twolayer.run.options import RunFailed, RunOptions
from twolayer.run.pytest_session import pytest_arguments


def retime_disturbed(result: dict, options: RunOptions, partial: Path, run_id: str, peak_path: Path | None,
                     quiet_canary_s: float | None, run_pytest: Callable[[list[str]], int],
                     state: Callable[[Path], MachineState] = machine_state,
                     wait: Callable[[float], None] = time.sleep) -> None:
    """Time again, at most `options.retimes` times, the benchmarks timed on a disturbed machine,
    each time only once the machine is calm again (checked a few times, seconds apart). A retimed
    entry replaces the first when its canary was calmer; `retimed` counts the attempts. What stays
    disturbed stays flagged: the reports and `compare` say so."""
    for attempt in range(1, options.retimes + 1):
        disturbed = disturbed_benchmarks(result)
        if not disturbed:
            return
        for _ in range(3):
            if not state(options.out).busy:
                break
            wait(2.0)
        else:
            print(f"twolayer run: {len(disturbed)} benchmark(s) timed on a disturbed machine stay flagged: the machine "
                  "is still busy", file=sys.stderr, flush=True)
            return
        print(f"retiming {len(disturbed)} benchmark(s) timed on a disturbed machine (attempt {attempt} of "
              f"{options.retimes}) ...", flush=True)
        retime_path = partial / f"retime-{attempt}.json"
        code = run_pytest(pytest_arguments(options, retime_path.resolve(), run_id, peak_path, quiet_canary_s,
                                           only=[b["fullname"] for b in disturbed]))
        if code != 0 or not retime_path.is_file():
            raise RunFailed(f"retiming the disturbed benchmarks failed (pytest exit code {code}); no results were written")
        retimed = {b["fullname"]: b for b in json.loads(retime_path.read_text(encoding="utf-8"))["benchmarks"]}
        retime_path.unlink()
        for index, bench in enumerate(result["benchmarks"]):
            again = retimed.get(bench["fullname"])
            if again is None:
                continue
            again["extra_info"]["retimed"] = attempt
            if calmer(again, bench, result.get("machine_info") or {}):
                result["benchmarks"][index] = again
            else:
                bench["extra_info"]["retimed"] = attempt
