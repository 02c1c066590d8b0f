"""How much memory a benchmark case needs, and how much its device has free.

A size whose tensors cannot fit is refused before anything runs, rather than after the peak and
a thousand lines of out-of-memory failures.
"""

from __future__ import annotations

from dataclasses import dataclass

from twolayer.problem import Problem

ITEMSIZE = {"float32": 4, "float64": 8}
# Beyond the tensors counted: the float64 draws the data and weights are cast from, temporaries,
# copies (numpy_fused keeps x transposed too) and the allocator's slack. Measured at
# 8192x4096x2048x10 on the cpu, the variants' resident memory grew by 0.8 to 1.19 times the count.
MARGIN = 1.25
MEMINFO = "/proc/meminfo"
# Below this every device the suite runs on has room; not asking spares the `twolayer` process a
# CUDA context of its own (torch.cuda.mem_get_info makes one) beside the suite's.
ALWAYS_FITS = 256 * 2**20


def estimate_bytes(problem: Problem, optimizer: str) -> int:
    """Bytes one variant holds while it trains `problem` (dtype resolved), with a margin:

        bytes = MARGIN * itemsize * (x + y + W1 + W2                       data and weights
                                     + h + h_relu + y_pred                 activations
                                     + grad_y_pred + grad_h_relu + grad_h  gradients of the activations
                                     + grad_W1 + grad_W2                   gradients of the weights
                                     + state)                              optimizer

    with x = N*D_in, y = y_pred = grad_y_pred = N*D_out, W1 = grad_W1 = D_in*H,
    W2 = grad_W2 = H*D_out, h = h_relu = grad_h_relu = grad_h = N*H, and state = 2*(W1 + W2) for
    Adam (its two moments) or W1 + W2 for SGD (the temporary `lr * grad`).
    """
    n, d_in, hidden, d_out = problem.n, problem.d_in, problem.hidden, problem.d_out
    data = n * d_in + n * d_out
    weights = weight_grads = d_in * hidden + hidden * d_out
    activations = activation_grads = 2 * n * hidden + n * d_out
    state = (2 if optimizer == "adam" else 1) * weights
    elements = data + weights + activations + activation_grads + weight_grads + state
    return int(MARGIN * ITEMSIZE[problem.dtype or "float64"] * elements)


@dataclass(frozen=True)
class Available:
    bytes: int
    source: str  # where the figure comes from, for the message


def available_memory(device: str) -> Available | None:
    """Free memory on `device`, or None where it cannot be read (then nothing is refused)."""
    if device == "cpu":
        try:
            with open(MEMINFO, encoding="utf-8") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return Available(int(line.split()[1]) * 1024, f"MemAvailable in {MEMINFO}")
        except (OSError, ValueError, IndexError):
            return None
        return None
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return Available(free, "free on cuda, torch.cuda.mem_get_info()")
    return None  # mps shares the machine's memory; macOS has no MemAvailable to read


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1024
    return f"{count:.1f} TiB"
