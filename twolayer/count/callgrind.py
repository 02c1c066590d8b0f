"""Valgrind's callgrind as the counter of instructions: its environment and its dumps read back."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from twolayer.count.worker import ONE_THREAD
from twolayer.provenance import PROJECT_ROOT


def callgrind_totals(path: Path) -> int:
    """The instruction total of one callgrind dump (`totals:` in newer files, `summary:` in older)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^(?:totals|summary):\s+(\d+)", text, flags=re.MULTILINE)
    if found is None:
        raise CountError(f"{path.name}: a callgrind dump without a total")
    return int(found.group(1))


def dumps_in_order(folder: Path, stem: str) -> list[Path]:
    """callgrind names the n-th client-request dump `<stem>.<n>`; the final one at exit is `<stem>`."""
    numbered = [(int(p.name.rsplit(".", 1)[1]), p) for p in folder.glob(f"{stem}.*") if p.name.rsplit(".", 1)[1].isdigit()]
    return [p for _, p in sorted(numbered)]


def worker_environment() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **ONE_THREAD, "PYTHONPATH": path}


CPUINFO = "/proc/cpuinfo"


def valgrind_cpu_capability() -> str:
    """The widest vector ISA for the code torch runs under Valgrind: AVX2 where the cpu has it.

    Valgrind emulates no AVX-512. ATen and the BLAS ask the cpu (cpuid), which Valgrind answers
    without AVX-512, but inductor reads /proc/cpuinfo and checks its choice in a child process
    that runs outside Valgrind, and compiles with `-march=native`: on an AVX-512 cpu
    `torch.compile` would build kernels that die under Valgrind with an illegal instruction.
    `ATEN_CPU_CAPABILITY` caps the ISA, `TORCHINDUCTOR_CPP_MARCH` the compiler's target
    (`valgrind_environment`)."""
    try:
        with open(CPUINFO, encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        flags = []
    return "avx2" if "avx2" in flags else "default"


def valgrind_environment() -> dict[str, str]:
    """What the worker under Valgrind runs with, beyond `worker_environment`: one string-hash seed
    (Python's per-process random one moves dict and set work, and so the count, from one process
    to the next), and on x86 the ISA cap."""
    fixed = {"PYTHONHASHSEED": "0"}
    if platform.machine() not in ("x86_64", "AMD64"):
        return fixed
    capability = valgrind_cpu_capability()
    return {**fixed, "ATEN_CPU_CAPABILITY": capability,
            "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3" if capability == "avx2" else "x86-64"}


class CountError(Exception):
    """A count that could not be made: one line, for the CLI."""
