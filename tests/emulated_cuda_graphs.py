"""CUDA graph capture and replay, emulated on the cpu, so `cuda_graph`'s own logic is tested where no GPU is.

What a real capture does, and so what this emulation does:
- capture records each kernel and runs none of them: a mutating op leaves its target untouched,
  and a new tensor made during capture holds garbage (NaN, or the dtype's largest value) until
  the first replay;
- an in-place change of shape or strides (`t_`, `unsqueeze_`, ...) touches no memory: it takes
  effect once, at capture, and is not replayed;
- replay runs the recorded kernels again on the same memory: each op is recomputed from the same
  tensor objects, with autograd off, and its result written into the tensor capture handed out;
- nothing captured may wait on the host: `.item()`, `.tolist()`, `.numpy()`, `.cpu()`,
  `torch.cuda.synchronize()`, and ops whose output shape depends on the data (`nonzero`, reading
  through a boolean mask, `unique`, ...) raise `CaptureError`, as CUDA refuses them. Writing one
  value through a boolean mask is allowed: ATen turns it into `masked_fill_`, which CUDA captures;
- streams: what the variant asks of them is written to `Emulation.log`, with the number of ops
  each side-stream block ran, so a test can check that the warm-up follows PyTorch's recipe.
What it cannot check is CUDA itself: allocator pools (each emulated graph owns its outputs, as
with `pool=None`; a shared `pool` is not modelled), 0-dim cpu tensors that real capture reads
once as constants, and kernels that refuse capture. `.ci/device-check` runs the real thing on a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

# Ops that read a device value back to the host, or whose output shape depends on the data.
SYNCHRONISING = {
    aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.is_nonzero, aten.equal, aten.allclose,
    aten._unique, aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.bincount, aten.repeat_interleave,
}
# Tensor methods that copy to the host without reaching the dispatcher when the tensor is already there.
HOST_COPIES = ("tolist", "numpy", "cpu")


class CaptureError(RuntimeError):
    """Something a CUDA graph cannot capture."""


def _written_arguments(func) -> list[int]:
    """Positions of the arguments that `func` writes into (in-place and out= ops)."""
    return [i for i, a in enumerate(func._schema.arguments) if a.alias_info is not None and a.alias_info.is_write]


def _aliases_an_input(func) -> bool:
    """Views and in-place ops return (part of) an input, not new memory."""
    return any(r.alias_info is not None for r in func._schema.returns)


def _boolean_indices(args) -> list[torch.Tensor]:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return [i for i in indices if isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)]


def _synchronises(func, args) -> bool:
    if func.overloadpacket in SYNCHRONISING:
        return True
    if not _boolean_indices(args):
        return False
    # One value through one mask is ATen's masked_fill_ path, with no host round trip.
    return not (func.overloadpacket is aten.index_put_ and len(args[1]) == 1 and args[2].numel() == 1)


def _fill_with_garbage(tensors) -> None:
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            continue
        if tensor.is_floating_point() or tensor.is_complex():
            tensor.fill_(float("nan"))
        elif tensor.dtype == torch.bool:
            tensor.fill_(True)
        else:
            tensor.fill_(torch.iinfo(tensor.dtype).max)


@dataclass
class Captured:
    func: object
    args: tuple
    kwargs: dict
    outputs: list[torch.Tensor] | None  # where replay writes the results; None for in-place and views


class _Capture(TorchDispatchMode):
    def __init__(self, graph: EmulatedGraph) -> None:
        super().__init__()
        self.graph = graph

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _synchronises(func, args):
            raise CaptureError(f"{func} waits on the host and cannot be captured in a CUDA graph")
        if torch.Tag.inplace_view in func.tags:  # shape and strides only: once, now
            return func(*args, **kwargs)
        written = _written_arguments(func)
        if written:  # recorded, not run: the target keeps its value until a replay
            names = [a.name for a in func._schema.arguments]
            targets = [args[i] if i < len(args) else kwargs[names[i]] for i in written]
            self.graph.ops.append(Captured(func, args, kwargs, None))
            return targets[0] if len(targets) == 1 else tuple(targets)
        out = func(*args, **kwargs)
        if _aliases_an_input(func):  # a view follows its base: nothing to write on replay
            self.graph.ops.append(Captured(func, args, kwargs, None))
            return out
        tensors = [t if isinstance(t, torch.Tensor) else None for t in tree_flatten(out)[0]]
        _fill_with_garbage(tensors)
        self.graph.ops.append(Captured(func, args, kwargs, tensors if any(t is not None for t in tensors) else None))
        return out


class EmulatedGraph:
    """Stands in for `torch.cuda.CUDAGraph`."""

    def __init__(self) -> None:
        self.ops: list[Captured] = []
        self.captured = False
        self.replays = 0

    def replay(self) -> None:
        if not self.captured:
            raise CaptureError("replay of a CUDA graph that was never captured")
        with torch.no_grad():
            for op in self.ops:
                result = op.func(*op.args, **op.kwargs)
                if op.outputs is not None:  # the result goes where capture said it would be
                    for target, value in zip(op.outputs, tree_flatten(result)[0], strict=True):
                        if target is not None:
                            target.copy_(value)
        self.replays += 1


class _Stream:
    def __init__(self, emulation: Emulation, name: str) -> None:
        self.emulation, self.name = emulation, name

    def wait_stream(self, other: _Stream) -> None:
        self.emulation.log.append(("wait", self.name, other.name))


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


@dataclass
class Emulation:
    graphs: list[EmulatedGraph] = field(default_factory=list)
    log: list[tuple] = field(default_factory=list)  # ("wait", waiter, waited), ("ran", stream, ops), ("capture",)
    capturing: bool = False
    streams: int = 0

    def make_graph(self) -> EmulatedGraph:
        self.graphs.append(EmulatedGraph())
        return self.graphs[-1]

    def new_stream(self) -> _Stream:
        self.streams += 1
        return _Stream(self, f"side{self.streams}")

    def current_stream(self) -> _Stream:
        return _Stream(self, "default")

    @contextlib.contextmanager
    def stream(self, stream: _Stream):
        counter = _CountOps()
        with counter:
            yield
        self.log.append(("ran", stream.name, counter.count))

    @contextlib.contextmanager
    def graph(self, graph: EmulatedGraph, pool=None, stream=None, capture_error_mode: str = "global"):
        if graph.captured:
            raise CaptureError("a CUDA graph is captured once")
        self.log.append(("capture",))
        self.capturing = True
        try:
            with _Capture(graph):
                yield graph
        finally:
            self.capturing = False
        graph.captured = True

    def synchronize(self, device=None) -> None:
        if self.capturing:
            raise CaptureError("torch.cuda.synchronize() waits on the host and cannot be captured in a CUDA graph")


def emulate_cuda_graphs(monkeypatch) -> Emulation:
    """Patch torch.cuda's graph, stream and sync calls, and the host copies, with the emulation."""
    emulation = Emulation()
    monkeypatch.setattr(torch.cuda, "CUDAGraph", emulation.make_graph)
    monkeypatch.setattr(torch.cuda, "graph", emulation.graph)
    monkeypatch.setattr(torch.cuda, "Stream", emulation.new_stream)
    monkeypatch.setattr(torch.cuda, "stream", emulation.stream)
    monkeypatch.setattr(torch.cuda, "current_stream", emulation.current_stream)
    monkeypatch.setattr(torch.cuda, "synchronize", emulation.synchronize)
    for name in HOST_COPIES:
        original = getattr(torch.Tensor, name)

        def refused_in_capture(self, *args, _original=original, _name=name, **kwargs):
            if emulation.capturing:
                raise CaptureError(f"Tensor.{_name}() waits on the host and cannot be captured in a CUDA graph")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, refused_in_capture)
    return emulation
