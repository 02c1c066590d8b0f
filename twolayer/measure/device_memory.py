"""The most device memory a phase holds at once beyond what it held before it (`peak_bytes`).

Why it is built this way, and the measurements behind it: docs/design.md, "twolayer.measure.device_memory".
"""

from __future__ import annotations

from types import ModuleType

from twolayer.measure.phases import PhaseCall


def phase_peak_bytes(call: PhaseCall, cuda: ModuleType | object | None = None) -> int:
    """`cuda` is `torch.cuda` (tests pass a fake with the same four functions)."""
    if cuda is None:
        import torch

        cuda = torch.cuda
    if call.setup is not None:
        call.setup()
    cuda.synchronize()
    cuda.reset_peak_memory_stats()
    before = cuda.memory_allocated()
    call.target()
    cuda.synchronize()
    return max(int(cuda.max_memory_allocated()) - int(before), 0)
