"""Moving the shared numpy data and weights into torch, and gradients back out."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(array: np.ndarray, device: str, requires_grad: bool = False) -> torch.Tensor:
    """A copy of `array` on `device`, so in-place training never writes back into shared arrays."""
    return torch.tensor(array, device=device, requires_grad=requires_grad)


def to_numpy64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def load_linear(linear: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
    """Set an `nn.Linear` from a weight in the tutorial's (in, out) layout (Linear keeps (out, in))."""
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight.T.copy()))
        if bias is not None:
            linear.bias.copy_(torch.from_numpy(bias))
