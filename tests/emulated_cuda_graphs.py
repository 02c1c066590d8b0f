"""CUDA graph capture and replay, emulated on the cpu, so `cuda_graph`'s own logic is tested where no GPU is.

What a real capture does, and so what this emulation does:
- capture records each kernel and runs none of them: a mutating op leaves its target untouched,
  and a new tensor made during capture holds garbage (NaN here) until the first replay;
- replay runs the recorded kernels again on the same memory: each op is recomputed from the
  same tensor objects and its result written into the tensor that capture handed out;
- an op that must synchronise with the host (`.item()`, `nonzero`, boolean-mask indexing) cannot
  be captured: here it raises `CaptureError`, as CUDA refuses it during capture.
What it cannot check is CUDA itself (allocator pools, streams, kernels that refuse capture):
that needs a GPU, and `.ci/device-check` runs the real thing there.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

# Ops that read a device value back to the host, or whose output shape depends on the data.
SYNCHRONISING = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.is_nonzero.default,
    aten.equal.default,
}


class CaptureError(RuntimeError):
    """An op that a CUDA graph cannot capture."""


def _writes(func) -> list[int]:
    """Positions of the arguments that `func` writes into (in-place and out= ops)."""
    return [i for i, a in enumerate(func._schema.arguments) if a.alias_info is not None and a.alias_info.is_write]


def _aliases_an_input(func) -> bool:
    """Views and in-place ops return (part of) an input, not new memory."""
    return any(r.alias_info is not None for r in func._schema.returns)


def _has_boolean_index(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


class _Capture(TorchDispatchMode):
    def __init__(self, graph: EmulatedGraph) -> None:
        super().__init__()
        self.graph = graph

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCHRONISING or (func.overloadpacket in (aten.index, aten.index_put_, aten.index_put)
                                     and _has_boolean_index(args)):
            raise CaptureError(f"{func} synchronises with the host and cannot be captured in a CUDA graph")
        written = _writes(func)
        if written:  # recorded, not run: the target keeps its value until a replay
            schema_args = func._schema.arguments
            targets = [args[i] if i < len(args) else kwargs[schema_args[i].name] for i in written]
            self.graph.ops.append((func, args, kwargs, None))
            return targets[0] if len(targets) == 1 else tuple(targets)
        out = func(*args, **kwargs)
        if _aliases_an_input(func):  # a view: it follows its base, nothing to replay into
            self.graph.ops.append((func, args, kwargs, None))
            return out
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                tensor.fill_(float("nan"))  # uninitialised until the first replay
        self.graph.ops.append((func, args, kwargs, out))
        return out


class EmulatedGraph:
    """Stands in for `torch.cuda.CUDAGraph`."""

    def __init__(self) -> None:
        self.ops: list = []
        self.replays = 0

    def replay(self) -> None:
        for func, args, kwargs, captured_out in self.ops:
            result = func(*args, **kwargs)
            if captured_out is not None:  # the result goes where capture said it would be
                for target, value in zip(tree_flatten(captured_out)[0], tree_flatten(result)[0], strict=True):
                    target.copy_(value)
        self.replays += 1


@contextlib.contextmanager
def _graph(graph: EmulatedGraph, *args, **kwargs):
    if graph.ops:
        raise CaptureError("a CUDA graph is captured once")
    with _Capture(graph):
        yield graph


class _Stream:
    def wait_stream(self, other) -> None:
        pass


def emulate_cuda_graphs(monkeypatch) -> list[EmulatedGraph]:
    """Patch torch.cuda's graph, stream and sync calls with the emulation; returns the graphs made."""
    graphs: list[EmulatedGraph] = []

    def make_graph() -> EmulatedGraph:
        graphs.append(EmulatedGraph())
        return graphs[-1]

    monkeypatch.setattr(torch.cuda, "CUDAGraph", make_graph)
    monkeypatch.setattr(torch.cuda, "graph", _graph)
    monkeypatch.setattr(torch.cuda, "Stream", _Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", _Stream)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    return graphs
