"""The gate's worker processes: one per side and slot, each running its own tree's code, spoken to in JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Protocol


class Side(Protocol):
    """What the pairing needs of a side: a real worker process or a scripted one in the tests."""

    def request(self, op: str, **fields) -> dict: ...


def worker_module(tree: Path) -> str | None:
    """The gate worker's module in `tree`: `twolayer.gate.worker`, or `twolayer.gate_worker` in a tree
    from before the package layout; None in a tree that has neither (it predates the paired gate)."""
    for module in ("twolayer.gate.worker", "twolayer.gate_worker"):
        if (tree / (module.replace(".", "/") + ".py")).is_file():
            return module
    return None


class WorkerProcess:
    """A `twolayer.gate.worker` process running the code of `tree`."""

    def __init__(self, name: str, tree: Path, log: Path) -> None:
        self.name, self.tree = name, tree
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log, "w", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", worker_module(tree)], cwd=tree, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        bufsize=1)

    def request(self, op: str, **fields) -> dict:
        self.send(op, **fields)
        return self.receive(op)

    def send(self, op: str, **fields) -> None:
        """The first half of `request`: send to several workers, then `receive` from each, and their
        work overlaps (starting a pool: each worker's `cases` imports every variant, about a second)."""
        try:
            self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker exited: `receive` reads no line and says so

    def receive(self, op: str) -> dict:
        try:
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError, ValueError):
            line = ""
        if not line:
            raise GateError(f"the {self.name} worker ({self.tree}) exited; its log is {self.log.name}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise GateError(f"the {self.name} worker ({self.tree}): {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            for stream in (self.process.stdin, self.process.stdout, self.log):
                try:
                    stream.close()
                except OSError:
                    pass


class Processes:
    """The pairs of worker processes (base, head) that a benchmark's instances go round, each pair
    with an id of its own for the bootstrap. `renew` swaps them all for fresh processes: a retime
    in the same processes adds pairs but cannot narrow the part of the interval that the processes
    themselves cause, and on a busy machine that part is most of it."""

    def __init__(self, bases: list[Side], news: list[Side],
                 renew: Callable[[], tuple[list[Side], list[Side]]] | None = None) -> None:
        self.renewer = renew
        self.first_id = 0  # the id of bases[0]; ids are never reused, so old pairs stay distinct
        self._take(bases, news)

    def _take(self, bases: list[Side], news: list[Side]) -> None:
        if len(bases) != len(news) or not bases:
            raise ValueError("a pool needs as many base as head processes, and at least one of each")
        self.bases, self.news = list(bases), list(news)

    def __len__(self) -> int:
        return len(self.bases)

    def pair(self, slot: int) -> tuple[int, Side, Side]:
        slot %= len(self.bases)
        return self.first_id + slot, self.bases[slot], self.news[slot]

    def sides(self) -> tuple[Side, ...]:
        return (*self.bases, *self.news)

    def renew(self) -> bool:
        """Fresh processes in place of these (closed first); False where there is no way to start any."""
        if self.renewer is None:
            return False
        for side in self.sides():  # first, so that a side never holds twice its processes' memory
            close = getattr(side, "close", None)
            if close is not None:
                close()
        try:
            fresh_bases, fresh_news = self.renewer()
        except BaseException:
            self.bases, self.news = [], []  # closed already: nothing left for the caller to close
            raise
        self.first_id += len(self.bases)
        self._take(fresh_bases, fresh_news)
        return True


def request_all(sides: list, op: str, **fields) -> list[dict]:
    """`op` to every side, all sent before any reply is read, so that worker processes answer in
    parallel; a side that cannot split a request (a scripted one) is asked in turn."""
    for side in sides:
        if hasattr(side, "send"):
            side.send(op, **fields)
    return [side.receive(op) if hasattr(side, "send") else side.request(op, **fields) for side in sides]


class GateError(Exception):
    """A worker that cannot start, or answers with an error: reported in one line."""
