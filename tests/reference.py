"""An independent float64 reference for the network's loss and gradients."""

import numpy as np
import torch


def reference_gradients(x, y, w1, w2, b1=None, b2=None, reduction="sum"):
    """Gradients of the L2 loss by float64 autograd, in the (in, out) weight layout."""
    tensors = {name: torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)
               for name, a in (("w1", w1), ("w2", w2), ("b1", b1), ("b2", b2)) if a is not None}
    x64, y64 = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    h = x64 @ tensors["w1"]
    if "b1" in tensors:
        h = h + tensors["b1"]
    y_pred = h.clamp(min=0) @ tensors["w2"]
    if "b2" in tensors:
        y_pred = y_pred + tensors["b2"]
    squared = (y_pred - y64).pow(2)
    loss = squared.sum() if reduction == "sum" else squared.mean()
    loss.backward()
    return loss.item(), {name: t.grad.numpy() for name, t in tensors.items()}


def finite_difference(loss_of, array, index, eps=1e-6):
    """Central difference of `loss_of()` with respect to one element of `array`."""
    original = array[index]
    array[index] = original + eps
    plus = loss_of()
    array[index] = original - eps
    minus = loss_of()
    array[index] = original
    return (plus - minus) / (2 * eps)
