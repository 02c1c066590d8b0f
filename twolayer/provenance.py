"""Provenance recorded with every result: versions, BLAS, thread counts, hardware, commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

import numpy as np
import torch

from twolayer.devices import cpu_model
from twolayer.hardware import hardware_identity

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def numpy_blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy has no dict mode; provenance must never break a run
        return "unknown"


def torch_blas() -> str:
    for line in torch.__config__.show().splitlines():
        if "BLAS_INFO" in line:
            return line.split("BLAS_INFO=", 1)[1].split(",", 1)[0]
    return "mkl" if torch.backends.mkl.is_available() else "unknown"


def numpy_threads() -> int | None:
    """Threads of the BLAS that numpy calls (threadpoolctl sees each loaded BLAS separately); None
    where threadpoolctl is not installed (a GPU machine's image, say): then it is not known."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None

    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    for pool in pools:
        if "numpy" in pool.get("filepath", ""):
            return pool["num_threads"]
    return pools[0]["num_threads"] if pools else None


def set_threads(count: int) -> None:
    """Use `count` threads in torch and in every BLAS (numpy's included; without threadpoolctl,
    numpy's BLAS keeps its own count, recorded as unknown)."""
    torch.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=count)


def usable_cores() -> int | None:
    """The cores this process may run on: its affinity where the OS tells it, else all of them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def oversubscription(threads: int | None, cores: int | None = None) -> str | None:
    """Why `threads` per pool would be more than this machine's cores can run at once (None where
    they can): the timings would measure the pools waiting for each other."""
    cores = cores or usable_cores()
    if threads is None or not cores or threads <= cores:
        return None
    return (f"--threads {threads} is more than the {cores} cores this process may run on: the thread pools will "
            "wait for each other, and the timings measure that")


def git_commit(short: bool = False) -> str | None:
    args = ["git", "rev-parse", "--short" if short else "--verify", "HEAD"]
    try:
        out = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def host_name() -> str:
    return socket.gethostname().split(".")[0] or "host"


def machine_facts() -> dict[str, object]:
    """What a reader needs to compare this run with another honestly."""
    cuda = torch.cuda.is_available()
    return {
        "twolayer_host": host_name(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),  # those this process may run on (affinity, a cpuset)
        # family, model, stepping, ISA level, GPU compute capability: "AMD EPYC" alone has named two cpus
        **hardware_identity(),
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "torch_blas": torch_blas(),
        "numpy_blas": numpy_blas(),
        "torch_threads": torch.get_num_threads(),
        "numpy_threads": numpy_threads(),
    }
