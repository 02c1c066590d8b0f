"""What `twolayer run` is asked to do (`RunOptions`), and how it can end short of a run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twolayer.variants.ddp import DEFAULT_COLLECTIVE_TIMEOUT_S


class RunFailed(Exception):
    """The suite ran but did not finish cleanly: nothing was written."""


class RunInterrupted(Exception):
    """Ctrl-C stopped the run; `kept` is the run directory holding the `finished` benchmarks, or None."""

    def __init__(self, kept: Path | None, finished: int) -> None:
        super().__init__(f"interrupted; {finished} finished benchmarks kept in {kept}" if kept else "interrupted")
        self.kept, self.finished = kept, finished


@dataclass(frozen=True)
class RunOptions:
    variants: str | None = None
    devices: str | None = None
    phases: str | None = None
    dtypes: str | None = None
    sizes: str | None = None
    threads: int | None = None
    budget_s: float | None = None
    quick: bool = False
    out: Path = Path("results")
    peak: bool = True  # measure (or reuse) the matmul peak, so reports can say how far from it each variant is
    repeat: int = 1  # passes over the selection, each shuffled: their spread is the run-to-run noise
    shuffle_seed: int | None = None  # the passes' order (random when None; recorded either way)
    retimes: int = 2  # how often benchmarks timed on a disturbed machine are timed again, at most
    # The distributed variants' (ddp): each world size is a launch of its own ranks on this machine;
    # None: in this process, as a world of one (or at torchrun's world size, under torchrun).
    world_sizes: tuple[int, ...] | None = None
    scaling: str | None = None  # strong (default) or weak
    collective_timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S
    verbose: bool = False  # pytest-benchmark's own tables too, as the suite prints them
