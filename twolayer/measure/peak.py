"""`twolayer peak`: what the device's matrix multiply can do, the ceiling every variant is read against.

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.measure.peak".
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from twolayer.atomic_files import write_atomically
from twolayer.devices import device_name, synchronize, torch_dtype
from twolayer.hardware import hardware_identity
from twolayer.measure.canary import MachineState, machine_state
from twolayer.problem import Problem
from twolayer.provenance import host_name, numpy_threads

SQUARE = {"cpu": 2048, "cuda": 8192, "mps": 4096}  # large enough to reach the BLAS's steady state
MIN_SECONDS = 0.3  # per shape: enough repetitions for a stable best-of


@dataclass(frozen=True)
class Peak:
    device: str
    device_name: str
    dtype: str
    square_n: int
    square_gflops: float  # the peak: the best library at the square size
    problem_gflops: float  # the best library at the problem's own largest matmul shape (x @ W1)
    square_gflops_by_library: dict[str, float]  # torch, numpy (cpu), jax (if installed): BLASes differ
    torch_threads: int
    numpy_threads: int | None
    torch_version: str
    numpy_version: str
    jax_version: str | None  # jax, where installed, joins the libraries measured
    hardware: str  # `hardware_key`: a cpu of another family or ISA under the same host name is measured afresh
    disturbed: bool = False  # the machine was busy while it was measured: not a ceiling to read against
    state: str = ""  # the machine's state before and after measuring, as `MachineState.describe` puts it

    @property
    def key(self) -> str:
        return f"{self.device}/{self.dtype}"


def _best_seconds(run, sync, min_seconds: float) -> float:
    run()
    sync()  # the first call pays for allocation and kernel selection
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        start = time.perf_counter()
        run()
        sync()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return best


def matmul_gflops(device: str, dtype: str, m: int, k: int, n: int, min_seconds: float = MIN_SECONDS) -> dict[str, float]:
    """Best-of GFLOP/s of an (m, k) @ (k, n) product by library: torch, numpy (cpu), jax (if installed)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(device=device, dtype=torch_dtype(dtype))
    b = torch.randn(k, n, generator=generator).to(device=device, dtype=torch_dtype(dtype))
    out = torch.empty(m, n, device=device, dtype=torch_dtype(dtype))
    seconds = {"torch": _best_seconds(lambda: torch.mm(a, b, out=out), lambda: synchronize(device), min_seconds)}
    if device == "cpu":
        a_np, b_np, out_np = a.numpy(), b.numpy(), out.numpy().copy()
        seconds["numpy"] = _best_seconds(lambda: np.dot(a_np, b_np, out=out_np), lambda: None, min_seconds)
    jax_seconds = _jax_matmul_seconds(device, a.cpu().numpy(), b.cpu().numpy(), min_seconds)
    if jax_seconds is not None:
        seconds["jax"] = jax_seconds
    return {library: 2 * m * k * n / s / 1e9 for library, s in seconds.items()}


def _jax_matmul_seconds(device: str, a: np.ndarray, b: np.ndarray, min_seconds: float) -> float | None:
    """XLA's matmul where jax is installed: on some cpus it beats both torch's and numpy's BLAS."""
    from twolayer.variants.jax_jit import jax, jax_absent_reason, jax_device  # optional and heavy: where asked for

    if jax is None or jax_absent_reason(device) is not None:
        return None
    target = jax_device(device)
    a_jax, b_jax = jax.device_put(a, target), jax.device_put(b, target)
    matmul = jax.jit(lambda x, y: x @ y)
    result = []
    return _best_seconds(lambda: result.append(matmul(a_jax, b_jax)),
                         lambda: jax.block_until_ready(result.pop()), min_seconds)


def measure_peak(device: str, dtype: str, problem: Problem = Problem(), min_seconds: float = MIN_SECONDS) -> Peak:
    square = SQUARE.get(device, 2048)
    by_library = matmul_gflops(device, dtype, square, square, square, min_seconds)
    return Peak(
        device=device,
        device_name=device_name(device),
        dtype=dtype,
        square_n=square,
        square_gflops=max(by_library.values()),
        problem_gflops=max(matmul_gflops(device, dtype, problem.n, problem.d_in, problem.hidden, min_seconds).values()),
        square_gflops_by_library=by_library,
        torch_threads=torch.get_num_threads(),
        numpy_threads=numpy_threads(),
        torch_version=torch.__version__,
        numpy_version=np.__version__,
        jax_version=jax_version(),
        hardware=hardware_identity()["hardware"],
    )


def jax_version() -> str | None:
    from twolayer.variants.jax_jit import jax  # jax is optional and heavy: only where a jax peak is asked for

    return None if jax is None else jax.__version__


def cache_path(cache_dir: Path) -> Path:
    return cache_dir / f"peak-{host_name()}.json"


def _setup(peak: Peak) -> tuple:
    return peak.hardware, peak.torch_threads, peak.numpy_threads, peak.torch_version, peak.numpy_version, peak.jax_version


def current_setup() -> tuple:
    return (hardware_identity()["hardware"], torch.get_num_threads(), numpy_threads(), torch.__version__,
            np.__version__, jax_version())


def cached_peaks(cache_dir: Path, devices: list[str], dtypes: list[str], refresh: bool = False,
                 state: Callable[[Path], MachineState] | None = None) -> dict[str, Peak]:
    """Peaks by `device/dtype`, measured only where the cache lacks a match for this setup.

    What is measured is cached only when the machine was quiet before and after (`state`)."""
    state = state or machine_state
    path = cache_path(cache_dir)
    try:
        stored = {k: Peak(**v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, TypeError):
        stored = {}  # no cache, or one from another version: measure afresh
    stored = {k: v for k, v in stored.items() if not v.disturbed}
    peaks, measured = {}, {}
    for device in devices:
        for dtype in dtypes:
            old = stored.get(f"{device}/{dtype}")
            if refresh or old is None or _setup(old) != current_setup():
                measured[f"{device}/{dtype}"] = None
            else:
                peaks[old.key] = old
    if measured:
        before = state(cache_dir)
        fresh = [measure_peak(*key.split("/")) for key in measured]
        after = state(cache_dir)
        disturbed = before.busy or after.busy
        for peak in fresh:
            peaks[peak.key] = replace(peak, disturbed=disturbed,
                                      state=f"before: {before.describe()}; after: {after.describe()}")
        if not disturbed:
            stored.update({peak.key: peaks[peak.key] for peak in fresh})
            write_atomically(path, json.dumps({k: asdict(v) for k, v in sorted(stored.items())}, indent=1) + "\n")
    return {key: peaks[key] for key in sorted(peaks)}
