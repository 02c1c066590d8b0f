"""One side of the paired gate: a worker process that builds and times benchmarks on request.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.gate.worker".
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from typing import Callable, TextIO

PROTOCOL = 1
HEAP_SHIFT_BYTES = 1 << 16  # up to 64 KiB
HEAP_SHIFT_STEP = 16  # malloc's alignment: every offset an array can have, within a cache line too


class Worker:
    """The benchmarks prepared in this process, by case id."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.cases: dict[str, object] = {}
        self.prepared: dict[str, tuple[object, object]] = {}
        self.padding = bytearray()
        self.rng = random.Random()

    def hello(self, request: dict) -> dict:
        import twolayer  # its own tree, after its threads are set
        from twolayer import SUITE_VERSION
        from twolayer.provenance import PROJECT_ROOT, git_commit, machine_facts

        return {"protocol": PROTOCOL, "metrics": sorted(self.metrics()), "root": str(PROJECT_ROOT),
                "module": twolayer.__file__, "commit": git_commit(), "suite_version": SUITE_VERSION,
                "machine": machine_facts()}

    def select(self, request: dict) -> dict:
        from twolayer.cases import plan_cases  # its own tree, after its threads are set
        from twolayer.provenance import set_threads

        if request.get("threads") is not None:
            set_threads(int(request["threads"]))
        cases = plan_cases(request.get("variants"), request.get("devices"), request.get("phases"),
                           request.get("dtypes"), request.get("sizes"))
        self.cases = {case.id: case for case in cases}
        return {"cases": [{"id": case.id, "variant": case.variant, "device": case.device, "phase": case.phase,
                           "dtype": case.dtype, "dtype_mode": case.dtype_mode, "size": case.problem.size_label,
                           "world_size": case.world_size, "scaling": case.scaling,
                           "skip": case.skip_reason} for case in cases]}

    def prepare(self, request: dict) -> dict:
        from twolayer.measure.phases import phase_call  # its own tree, after its threads are set
        from twolayer.measure.timing import Budget, plan_rounds
        from twolayer.variants import VARIANTS, build

        case = self.cases[request["case"]]
        instance = int(request.get("instance", 0))
        reset = getattr(VARIANTS[case.variant].factory, "reset_compile_caches", None)
        if reset is not None and instance == 0:
            reset()  # the first instance compiles afresh; later ones reuse the compiled graphs
        self.prepared.pop(case.id, None)
        self.padding = bytearray(HEAP_SHIFT_STEP * self.rng.randrange(HEAP_SHIFT_BYTES // HEAP_SHIFT_STEP))  # a new layout
        variant = build(case.variant, case.problem, case.device)
        call = phase_call(variant, case.phase)
        plan = plan_rounds(call, Budget(), self.clock)  # its probe calls warm the benchmark up too
        self.prepared[case.id] = (variant, call)
        compile_seconds = getattr(variant, "compile_seconds", None)
        return {"probe_round_s": plan.probe_round_s,
                "compile_s": sum(compile_seconds.values()) if compile_seconds is not None else None}

    def metrics(self) -> dict[str, Callable[[object, int, float], list[float]]]:
        return {"time_s": self.time_rounds}

    def time_rounds(self, call, rounds: int, max_s: float = math.inf) -> list[float]:
        """Per-call seconds, setup untimed before every call; a block cut short by `max_s` (a
        machine slowed 100x would otherwise stretch a 20 ms block to seconds)."""
        values = []
        begun = self.clock()
        for _ in range(rounds):
            if call.setup is not None:
                call.setup()
            start = self.clock()
            call.target()
            end = self.clock()
            values.append(end - start)
            if end - begun >= max_s:
                break
        return values

    def measure(self, request: dict) -> dict:
        metric = request.get("metric", "time_s")
        measure = self.metrics().get(metric)
        if measure is None:
            raise ValueError(f"unknown metric {metric!r}; this worker measures {', '.join(self.metrics())}")
        _, call = self.prepared[request["case"]]
        return {"values": measure(call, int(request["rounds"]), float(request.get("max_s", math.inf)))}

    def canary(self, request: dict) -> dict:
        from twolayer.measure.canary import canary_seconds, machine_load  # its own tree, after its threads are set

        return {"canary_s": canary_seconds(), **machine_load(samples=3, interval_s=0.005)}

    def release(self, request: dict) -> dict:
        variant, _ = self.prepared.pop(request["case"])
        self.padding = bytearray()
        loss = variant.loss()
        if not math.isfinite(loss):
            raise ArithmeticError(f"{request['case']}: loss became {loss} while timing")
        return {"loss": loss}

    def handle(self, request: dict) -> dict:
        handlers = {"hello": self.hello, "cases": self.select, "prepare": self.prepare, "measure": self.measure,
                    "canary": self.canary, "release": self.release}
        op = request.get("op")
        if op not in handlers:
            raise ValueError(f"unknown op {op!r}")
        return handlers[op](request)


def serve(lines: TextIO, replies: TextIO, worker: Worker | None = None) -> None:
    """Answer requests until `quit` or the end of input."""
    worker = worker or Worker()
    for line in lines:
        try:
            request = json.loads(line)
            if request.get("op") == "quit":
                return
            reply = {"ok": True, **worker.handle(request)}
        except KeyError as error:
            reply = {"ok": False, "error": f"unknown or unprepared case {error.args[0]!r}"}
        except Exception as error:  # any failure is the driver's to report, in one line
            reply = {"ok": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> None:
    # The protocol owns the real stdout; whatever else is printed (by a library, say) goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
