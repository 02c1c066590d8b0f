"""Which hardware this is, beyond its marketing name: what a cached figure must be keyed on.

"AMD EPYC" has named both a Zen 5 with AVX-512 and a Zen 3 with AVX2 under the same host name,
with matmul peaks 2.5x apart. The CPU's family, model and stepping, and the widest vector ISA it
offers, tell them apart; for a GPU, its name and compute capability.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
# Widest first: the first a CPU's flags name is its ISA level.
ISA_LEVELS = ("avx512f", "avx2", "avx", "sse4_2", "neon", "asimd")


def cpu_identity(cpuinfo: str | None = None) -> dict[str, str | None]:
    """Vendor, family, model, stepping and ISA level of the first CPU (None where not reported)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    isa = next((level for level in ISA_LEVELS if level in flags), None)
    return {
        "cpu_vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
        "cpu_family": fields.get("cpu family") or fields.get("CPU architecture"),
        "cpu_model_id": fields.get("model") or fields.get("CPU part"),
        "cpu_stepping": fields.get("stepping") or fields.get("CPU revision"),
        "cpu_isa": isa or platform.machine() or None,
    }


def gpu_identity() -> dict[str, str | None]:
    """The current CUDA device's name and compute capability, or Nones without one."""
    if not torch.cuda.is_available():
        return {"gpu_model": None, "gpu_capability": None}
    major, minor = torch.cuda.get_device_capability()
    return {"gpu_model": torch.cuda.get_device_name(), "gpu_capability": f"{major}.{minor}"}


def hardware_key(identity: dict[str, object]) -> str:
    """One string naming the hardware: equal keys, same silicon (as far as the OS tells)."""
    cpu = "/".join(str(identity.get(k) or "?") for k in ("cpu_vendor", "cpu_family", "cpu_model_id", "cpu_stepping"))
    key = f"cpu {cpu} {identity.get('cpu_isa') or '?'}"
    if identity.get("gpu_model"):
        key += f"; gpu {identity['gpu_model']} sm {identity.get('gpu_capability') or '?'}"
    return key


def hardware_identity() -> dict[str, str | None]:
    identity = {**cpu_identity(), **gpu_identity()}
    return {**identity, "hardware": hardware_key(identity)}
