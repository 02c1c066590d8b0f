"""The most device memory a phase holds at once beyond what it held before it (`peak_bytes`).

    setup()                                  untimed, as for a timed round
    reset_peak_memory_stats()
    before = memory_allocated()
    call()
    peak_bytes = max_memory_allocated() - before

taken in one call after the timed rounds, so the resets stay out of them. It counts the
caching allocator's live tensors (temporaries, new outputs, autograd's saved tensors), not the
blocks it keeps cached, so it does not depend on what earlier benchmarks left in the cache.
"""

from __future__ import annotations

from types import ModuleType

from twolayer.phases import PhaseCall


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
