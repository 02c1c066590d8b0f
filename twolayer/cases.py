"""What the benchmark suite runs: a frozen description of each case, and the selection of cases.

A selection is parsed and checked here, once, for both `pytest bench/` and `twolayer run`, so
that an unknown name or an empty selection fails the same way before anything is timed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from twolayer.devices import KNOWN_DEVICES, available_devices, device_absent_reason
from twolayer.flops import PHASES, phase_flops
from twolayer.memory import ALWAYS_FITS, available_memory, estimate_bytes, human_bytes
from twolayer.problem import DTYPES, Problem, parse_size
from twolayer.variants import VARIANTS, resolve, variant_device_reason
from twolayer.variants.ddp import launched_world_size

SCALINGS = ("strong", "weak")

TUTORIAL_DTYPE = "tutorial"  # each variant in its own tutorial dtype (numpy float64, torch float32)
# float32 by default so every row does the same arithmetic, numpy_manual included.
DEFAULT_DTYPES = ("float32",)
DEFAULT_SIZES = (Problem().size_label,)
# `--sweep`: from the tutorial's size, where overhead dominates, to one where the matmuls do
# (N=4096, H=1000 runs at 70-80% of the matmul peak); about three minutes on two cores.
SWEEP_SIZES = ("64x1000x100x10", "256x1000x400x10", "1024x1000x1000x10", "4096x1000x1000x10")
SWEEP_PHASES = ("iteration",)


@dataclass(frozen=True)
class BenchCase:
    variant: str
    device: str
    phase: str
    problem: Problem  # resolved: dtype and learning rate set
    # What was asked for: float32 or float64 for every variant, or `tutorial` (each its own);
    # the variants compared with one another are those of one mode.
    dtype_mode: str
    skip_reason: str | None = field(default=None, compare=False)
    # A distributed variant's: the ranks it runs on and how the batch is shared among them
    # (`strong`: N rows split, `weak`: N rows each); 1 and "" for every other variant.
    world_size: int = 1
    scaling: str = ""

    @property
    def dtype(self) -> str:
        return self.problem.dtype  # type: ignore[return-value]

    @property
    def group(self) -> str:
        """pytest-benchmark compares the variants within one group."""
        return f"{self.device} {self.phase} {self.dtype_mode} {self.problem.size_label}"

    @property
    def id(self) -> str:
        mode = "" if self.dtype_mode == self.dtype else f"{self.dtype_mode}:"
        ranks = f"-w{self.world_size}-{self.scaling}" if self.scaling else ""
        return f"{self.device}-{self.phase}-{mode}{self.dtype}-{self.problem.size_label}-{self.variant}{ranks}"

    def flops(self) -> int:
        info = VARIANTS[self.variant]
        return phase_flops(self.problem, self.phase, info.optimizer, info.bias)


def default_variants(quick: bool = False) -> tuple[str, ...]:
    """Every variant; a quick run leaves out those that compile for seconds per graph."""
    return tuple(name for name, info in VARIANTS.items() if not (quick and info.compiles))


@dataclass(frozen=True)
class Selection:
    variants: tuple[str, ...] = tuple(VARIANTS)
    variants_named: bool = False  # named by the user: one that cannot run here is an error, not a skip
    devices: tuple[str, ...] = ()  # empty: every device present (absent ones are skipped with their reason)
    phases: tuple[str, ...] = PHASES
    dtypes: tuple[str, ...] = DEFAULT_DTYPES
    sizes: tuple[str, ...] = DEFAULT_SIZES
    scaling: str = "strong"  # of the distributed variants


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _check_names(kind: str, names: tuple[str, ...], valid: tuple[str, ...]) -> None:
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown {kind} {name!r}; choose from {', '.join(valid)}")


def parse_selection(
    variants: str | None = None,
    devices: str | None = None,
    phases: str | None = None,
    dtypes: str | None = None,
    sizes: str | None = None,
    quick: bool = False,
    scaling: str | None = None,
) -> Selection:
    """A checked selection from comma-separated option values (None or '' keeps the default)."""
    selection = Selection(
        variants=split_list(variants) or default_variants(quick),
        variants_named=bool(split_list(variants)),
        devices=split_list(devices),
        phases=split_list(phases) or Selection.phases,
        dtypes=split_list(dtypes) or DEFAULT_DTYPES,
        sizes=split_list(sizes) or DEFAULT_SIZES,
        scaling=scaling or "strong",
    )
    if selection.scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {selection.scaling!r}; choose from {', '.join(SCALINGS)}")
    _check_names("variant", selection.variants, tuple(VARIANTS))
    _check_names("device", selection.devices, KNOWN_DEVICES)
    _check_names("phase", selection.phases, PHASES)
    _check_names("dtype", selection.dtypes, (*DTYPES, TUTORIAL_DTYPE))
    for size in selection.sizes:
        parse_size(size)
    return selection


def check_devices_present(selection: Selection) -> None:
    """A device or a variant asked for by name must be usable here: fail now rather than skip later."""
    for device in selection.devices:
        reason = device_absent_reason(device)
        if reason is not None:
            raise ValueError(reason)
    if selection.variants_named:
        for variant in selection.variants:
            info = VARIANTS[variant]
            for device in selection.devices or ("cpu",):
                reason = info.absent_reason(device) if info.absent_reason and device in info.devices else None
                if reason is not None:
                    raise ValueError(f"{variant}: {reason}")


def make_cases(selection: Selection, world_size: int | None = None) -> list[BenchCase]:
    """Every (device, phase, dtype, size, variant) the selection names and the variant supports,
    each once (a size or dtype named twice is still one case). A distributed variant's cases run
    at `world_size`, by default the one this process was launched with (1 when none).

    With no devices named, cpu and cuda are always listed, and mps where it is present; an
    absent device's cases carry the reason as their skip, so a run shows what was not measured.
    """
    devices = selection.devices or tuple(d for d in KNOWN_DEVICES if d in ("cpu", "cuda") or d in available_devices())
    cases = []
    for device in devices:
        for phase in selection.phases:
            for dtype in dict.fromkeys(selection.dtypes):
                for size in dict.fromkeys(Problem(*parse_size(size)).size_label for size in selection.sizes):
                    n, d_in, hidden, d_out = parse_size(size)
                    for variant in selection.variants:
                        info = VARIANTS[variant]
                        if device not in info.devices or phase not in info.phases:
                            continue  # not applicable: never measured, never faked
                        problem = Problem(n=n, d_in=d_in, hidden=hidden, d_out=d_out,
                                          dtype=None if dtype == TUTORIAL_DTYPE else dtype)
                        skip = variant_device_reason(variant, device)
                        ranks = {}
                        if info.distributed:
                            ranks = dict(world_size=world_size or launched_world_size(), scaling=selection.scaling)
                            skip = skip or ranks_reason(problem, device, **ranks)
                        cases.append(BenchCase(variant, device, phase, resolve(variant, problem), dtype, skip, **ranks))
    return list(dict.fromkeys(cases))


def ranks_reason(problem: Problem, device: str, world_size: int, scaling: str) -> str | None:
    """Why a distributed case cannot run at `world_size`: too few GPUs for one per rank; raises
    ValueError for a batch that strong scaling cannot split evenly (a bad selection, not a skip)."""
    if scaling == "strong" and problem.n % world_size:
        raise ValueError(f"N={problem.n} rows cannot be split evenly across {world_size} ranks; choose --sizes "
                         "with N a multiple of the world size, or --scaling weak")
    if device == "cuda":
        present = torch.cuda.device_count() if torch.cuda.is_available() else 0
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        if present < local:
            return f"ddp on cuda needs a GPU per rank: {local} ranks here, {present} GPU(s)"
    return None


def check_not_empty(cases: list[BenchCase]) -> None:
    if not any(case.skip_reason is None for case in cases):
        raise ValueError("the selection matches no benchmark that can run here (check --variants and --devices)")


def check_memory(cases: list[BenchCase]) -> None:
    """Refuse a selection whose largest case on a device cannot fit in the memory free there.

    Cases run one at a time, so each device needs room for its largest case only (the estimate
    is `twolayer.memory.estimate_bytes`)."""
    largest: dict[str, tuple[int, BenchCase]] = {}
    for case in cases:
        if case.skip_reason is None:
            need = estimate_bytes(case.problem, VARIANTS[case.variant].optimizer)
            if need > largest.get(case.device, (-1, case))[0]:
                largest[case.device] = (need, case)
    for device, (need, case) in largest.items():
        available = available_memory(device) if need > ALWAYS_FITS else None
        if available is not None and need > available.bytes:
            raise ValueError(f"size {case.problem.size_label} needs about {human_bytes(need)} on {device} "
                             f"({case.variant}, {case.dtype}), but {human_bytes(available.bytes)} is available "
                             f"({available.source}); choose smaller --sizes")


def plan_cases(variants: str | None = None, devices: str | None = None, phases: str | None = None,
               dtypes: str | None = None, sizes: str | None = None, quick: bool = False,
               scaling: str | None = None, world_size: int | None = None) -> list[BenchCase]:
    """The checked cases of a selection given as option strings; ValueError with one line if bad."""
    selection = parse_selection(variants, devices, phases, dtypes, sizes, quick=quick, scaling=scaling)
    check_devices_present(selection)
    cases = make_cases(selection, world_size)
    check_not_empty(cases)
    check_memory(cases)
    return cases
