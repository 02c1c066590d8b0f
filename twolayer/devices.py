"""Which devices exist here, what they are called, and how to wait for them."""

from __future__ import annotations

import platform

import torch

KNOWN_DEVICES = ("cpu", "cuda", "mps")


def device_absent_reason(device: str) -> str | None:
    """None when `device` can run torch work here, else why not (for skips and errors)."""
    if device == "cpu":
        return None
    if device == "cuda":
        if not torch.cuda.is_available():
            return "cuda is not available here (torch.cuda.is_available() is False)"
        return None
    if device == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            return "mps is not available here (torch.backends.mps.is_available() is False)"
        return None
    return f"unknown device {device!r}; choose from {', '.join(KNOWN_DEVICES)}"


def available_devices() -> list[str]:
    """The devices present, found rather than assumed: cpu always, then cuda and mps if usable."""
    return [d for d in KNOWN_DEVICES if device_absent_reason(d) is None]


def synchronize(device: str) -> None:
    """Block until all queued work on `device` has finished, so a clock read after it is honest."""
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def device_name(device: str) -> str:
    """The hardware behind `device`: the GPU's name, or the CPU model."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    if device == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]
