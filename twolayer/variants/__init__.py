"""The registry: every variant in tutorial order, with what it needs and how to build it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from twolayer.devices import device_absent_reason
from twolayer.flops import PHASES
from twolayer.problem import Init, Problem, sgd_rate_scale
from twolayer.variants.cuda_graph import CudaGraph
from twolayer.variants.ddp import DDP
from twolayer.variants.jax_jit import JaxJit, jax_absent_reason
from twolayer.variants.module_linear import ModuleLinear
from twolayer.variants.module_params import ModuleParams
from twolayer.variants.nn_sequential import NNSequential
from twolayer.variants.nn_sequential_optim import NNSequentialOptim
from twolayer.variants.numpy_fused import NumpyFused
from twolayer.variants.numpy_manual import NumpyManual
from twolayer.variants.protocol import Variant, iteration_of, run_iteration
from twolayer.variants.torch_autograd import TorchAutograd
from twolayer.variants.torch_compile import TorchCompile
from twolayer.variants.torch_compile_graphs import TorchCompileGraphs
from twolayer.variants.torch_manual import TorchManual
from twolayer.variants.torch_mseloss import TorchMSELoss
from twolayer.variants.torch_optim import TorchOptim

TORCH_DEVICES = ("cpu", "cuda", "mps")


@dataclass(frozen=True)
class VariantInfo:
    name: str
    section: str  # the tutorial section it reproduces
    summary: str
    factory: Callable[[Problem, str], Variant]
    devices: tuple[str, ...]
    default_dtype: str
    learning_rate: float  # the section's own rate
    optimizer: Literal["sgd", "adam"]
    loss_reduction: Literal["sum", "mean"]
    init: Init
    bias: bool = False
    origin: Literal["tutorial", "beyond"] = "tutorial"  # a tutorial section, or beyond what it shows
    phases: tuple[str, ...] = PHASES  # a variant that cannot split its iteration declares fewer
    absent_reason: Callable[[str], str | None] | None = None  # why it cannot run on a device here
    compiles: bool = False  # compiles per graph (seconds): left out of --quick unless named
    library: Literal["torch", "numpy", "jax"] = "torch"  # whose ops it runs: aten ops are counted for torch only
    # One process per rank, joined by torch.distributed: timed at each `--world-size`, never counted
    # (its collectives run on the backend's own threads).
    distributed: bool = False


VARIANTS: dict[str, VariantInfo] = {
    info.name: info
    for info in (
        VariantInfo("numpy_manual", "方案一", "numpy, hand-written backward and update",
                    NumpyManual, ("cpu",), "float64", 1e-6, "sgd", "sum", "normal", library="numpy"),
        VariantInfo("torch_manual", "方案二", "torch tensors, hand-written backward and update",
                    TorchManual, TORCH_DEVICES, "float32", 1e-6, "sgd", "sum", "normal"),
        VariantInfo("torch_autograd", "方案三", "autograd, manual update under no_grad",
                    TorchAutograd, TORCH_DEVICES, "float32", 1e-6, "sgd", "sum", "normal"),
        VariantInfo("torch_optim", "方案四", "autograd + torch.optim.SGD",
                    TorchOptim, TORCH_DEVICES, "float32", 1e-6, "sgd", "sum", "normal"),
        VariantInfo("torch_mseloss", "方案五", "autograd + nn.MSELoss(sum) + SGD",
                    TorchMSELoss, TORCH_DEVICES, "float32", 1e-6, "sgd", "sum", "normal"),
        VariantInfo("nn_sequential", "方案六", "nn.Sequential with bias, manual update, zero_grad",
                    NNSequential, TORCH_DEVICES, "float32", 1e-6, "sgd", "sum", "normal", bias=True),
        VariantInfo("nn_sequential_optim", "方案七", "nn.Sequential without bias + SGD",
                    NNSequentialOptim, TORCH_DEVICES, "float32", 1e-6, "sgd", "sum", "normal"),
        VariantInfo("module_params", "方案八", "nn.Module with explicit Parameters (Xavier), MSELoss mean, Adam",
                    ModuleParams, TORCH_DEVICES, "float32", 1e-4, "adam", "mean", "xavier_normal"),
        VariantInfo("module_linear", "方案九", "nn.Module with Linear layers, MSELoss sum, Adam",
                    ModuleLinear, TORCH_DEVICES, "float32", 1e-4, "adam", "sum", "linear_default"),
        VariantInfo("numpy_fused", "方案一", "numpy with preallocated buffers (out=) and in-place updates",
                    NumpyFused, ("cpu",), "float32", 1e-6, "sgd", "sum", "normal", origin="beyond", library="numpy"),
        VariantInfo("torch_compile", "方案二", "hand-written iteration under torch.compile, a graph per phase",
                    TorchCompile, ("cpu", "cuda"), "float32", 1e-6, "sgd", "sum", "normal", origin="beyond",
                    compiles=True),
        VariantInfo("cuda_graph", "方案二", "whole iteration captured in one CUDA graph and replayed",
                    CudaGraph, ("cuda",), "float32", 1e-6, "sgd", "sum", "normal", origin="beyond",
                    phases=("forward", "iteration")),
        VariantInfo("torch_compile_graphs", "方案二", "torch.compile reduce-overhead: inductor's CUDA graphs",
                    TorchCompileGraphs, ("cuda",), "float32", 1e-6, "sgd", "sum", "normal", origin="beyond",
                    phases=("forward", "iteration"), compiles=True),
        VariantInfo("ddp", "方案七", "nn.Sequential + SGD in DistributedDataParallel, the batch split across ranks",
                    DDP, ("cpu", "cuda"), "float32", 1e-6, "sgd", "sum", "normal", origin="beyond", distributed=True),
        VariantInfo("jax_jit", "方案一", "jax.jit forward (vjp), pullback and update; optional extra jax",
                    JaxJit, ("cpu", "cuda"), "float32", 1e-6, "sgd", "sum", "normal", origin="beyond",
                    absent_reason=jax_absent_reason, compiles=True, library="jax"),
    )
}


def variant_info(name: str) -> VariantInfo:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}") from None


def variant_device_reason(name: str, device: str) -> str | None:
    """None when variant `name` can run on `device` here, else the reason it cannot."""
    info = variant_info(name)
    if device not in info.devices:
        return f"{name} runs on {', '.join(info.devices)}, not {device}"
    return device_absent_reason(device) or (info.absent_reason(device) if info.absent_reason else None)


def resolve(name: str, problem: Problem) -> Problem:
    """`problem` with the variant's tutorial dtype and learning rate where it leaves them unset.

    SGD's rate is scaled with the problem's size (Adam's steps do not grow with the gradient)."""
    info = variant_info(name)
    scale = sgd_rate_scale(problem) if info.optimizer == "sgd" and problem.learning_rate is None else 1.0
    return problem.with_defaults(info.default_dtype, info.learning_rate * scale)


def build(name: str, problem: Problem, device: str = "cpu", scaling: str = "strong") -> Variant:
    """A fresh variant at its initial weights, ready for `forward()`. `scaling` (strong or weak) is
    for a distributed variant only."""
    reason = variant_device_reason(name, device)
    if reason is not None:
        raise ValueError(reason)
    info = variant_info(name)
    if info.distributed:
        return info.factory(resolve(name, problem), device, scaling)
    return info.factory(resolve(name, problem), device)


__all__ = ["VARIANTS", "Variant", "VariantInfo", "build", "variant_device_reason", "iteration_of", "resolve", "run_iteration",
           "variant_info"]
