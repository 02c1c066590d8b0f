"""Each variant is the tutorial's own section, hyperparameters and all, in the registry and in the
object it builds.

The table below is written out from the tutorial (方案一 to 方案九), not from the registry, so
that changing a variant and its registry entry together still turns a test red. The built
objects are checked by what they do: the dtype they compute in, the update one step makes (SGD's
`-lr * grad`, Adam's first step `-lr * sign(grad)`), the loss they report against the loss
recomputed from their own weights, their biases, and the spread of their initial weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from twolayer.problem import Problem
from twolayer.variants import VARIANTS, build


@dataclass(frozen=True)
class Section:
    dtype: str  # numpy's randn is float64, torch's randn float32
    learning_rate: float
    update: str  # "manual": w -= lr * grad by hand; "torch.optim.SGD"; "torch.optim.Adam"
    reduction: str  # of the L2 loss: "sum" ((y_pred - y)^2 summed, or MSELoss(reduction='sum')) or "mean"
    bias: bool
    init: str  # "randn"; "xavier_normal" (nn.init.xavier_normal_); "linear_default" (nn.Linear's own)
    loop: int  # the tutorial's `for it in range(loop)`


TUTORIAL = {
    "方案一": Section("float64", 1e-6, "manual", "sum", False, "randn", 501),  # numpy
    "方案二": Section("float32", 1e-6, "manual", "sum", False, "randn", 501),  # torch tensors
    "方案三": Section("float32", 1e-6, "manual", "sum", False, "randn", 501),  # autograd, update under no_grad
    "方案四": Section("float32", 1e-6, "torch.optim.SGD", "sum", False, "randn", 501),
    "方案五": Section("float32", 1e-6, "torch.optim.SGD", "sum", False, "randn", 501),  # nn.MSELoss(reduction='sum')
    "方案六": Section("float32", 1e-6, "manual", "sum", True, "randn", 501),  # nn.Sequential, bias=True
    "方案七": Section("float32", 1e-6, "torch.optim.SGD", "sum", False, "randn", 501),  # bias=False
    "方案八": Section("float32", 1e-4, "torch.optim.Adam", "mean", False, "xavier_normal", 500),  # nn.MSELoss()
    "方案九": Section("float32", 1e-4, "torch.optim.Adam", "sum", False, "linear_default", 500),  # Linear, no bias
}
SECTION_OF = {"numpy_manual": "方案一", "torch_manual": "方案二", "torch_autograd": "方案三", "torch_optim": "方案四",
              "torch_mseloss": "方案五", "nn_sequential": "方案六", "nn_sequential_optim": "方案七",
              "module_params": "方案八", "module_linear": "方案九"}
REGISTRY_INIT = {"randn": "normal", "xavier_normal": "xavier_normal", "linear_default": "linear_default"}
REGISTRY_OPTIMIZER = {"manual": "sgd", "torch.optim.SGD": "sgd", "torch.optim.Adam": "adam"}
CPU_VARIANTS = [name for name, info in VARIANTS.items() if "cpu" in info.devices and info.absent_reason is None]
PROBLEM = Problem(seed=3)


def test_every_tutorial_section_has_exactly_one_variant():
    tutorial = {name: info.section for name, info in VARIANTS.items() if info.origin == "tutorial"}
    assert tutorial == SECTION_OF


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_registry_carries_its_sections_hyperparameters(name):
    info = VARIANTS[name]
    section = TUTORIAL[info.section]
    if info.origin == "tutorial":  # the "beyond" variants choose their own dtype (numpy_fused: float32)
        assert info.default_dtype == section.dtype
    assert info.learning_rate == section.learning_rate
    assert info.optimizer == REGISTRY_OPTIMIZER[section.update]
    assert info.loss_reduction == section.reduction
    assert info.bias == section.bias
    assert info.init == REGISTRY_INIT[section.init]


def test_the_default_training_logs_the_tutorials_iterations():
    """The tutorial prints the loss at `it` = 0 .. loop - 1; `twolayer train` logs 0 .. iterations."""
    assert PROBLEM.iterations + 1 >= max(section.loop for section in TUTORIAL.values())


def as_numpy(value) -> np.ndarray:
    return value.detach().cpu().double().numpy().copy() if isinstance(value, torch.Tensor) else \
        np.array(value, dtype=np.float64)


def parameters(variant) -> dict[str, object]:
    """The variant's weights (and biases), in the tutorial's orientation: w1 is D_in x H."""
    model = getattr(variant, "model", None)
    if model is None:
        return {"w1": variant.w1, "w2": variant.w2}
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # ddp: the wrapped nn.Sequential
    if isinstance(model, nn.Sequential):
        first, second = model[0], model[2]
    elif hasattr(model, "W1"):
        return {"w1": model.W1, "w2": model.W2}
    else:
        first, second = model.linear1, model.linear2
    found = {"w1": first.weight.T, "w2": second.weight.T}
    if first.bias is not None:
        found |= {"b1": first.bias, "b2": second.bias}
    return found


def built(name: str):
    return build(name, PROBLEM, "cpu")


@pytest.mark.parametrize("name", CPU_VARIANTS)
def test_the_built_variant_computes_in_its_sections_dtype_with_its_biases(name):
    info, variant = VARIANTS[name], built(name)
    found = parameters(variant)
    dtypes = {str(value.dtype).removeprefix("torch.") for value in found.values()}
    assert dtypes == {info.default_dtype}
    section = TUTORIAL[info.section]
    assert ("b1" in found) == section.bias
    variant.forward()
    variant.backward()
    assert ("b1" in variant.gradients()) == section.bias


@pytest.mark.parametrize("name", CPU_VARIANTS)
def test_the_built_variant_reports_its_sections_loss(name):
    """The loss it reports, recomputed from its own weights and data with the section's reduction."""
    variant = built(name)
    variant.forward()
    p = {key: as_numpy(value) for key, value in parameters(variant).items()}
    x, y = as_numpy(variant.x), as_numpy(variant.y)
    hidden = x @ p["w1"] + p.get("b1", 0.0)
    y_pred = np.maximum(hidden, 0.0) @ p["w2"] + p.get("b2", 0.0)
    squares = (y_pred - y) ** 2
    expected = squares.sum() if TUTORIAL[VARIANTS[name].section].reduction == "sum" else squares.mean()
    assert variant.loss() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", CPU_VARIANTS)
def test_one_step_is_the_sections_update_at_its_rate(name):
    """SGD (by hand or torch.optim.SGD) moves each weight by -lr * grad; Adam's first step moves it
    by -lr * grad / (|grad| + eps), which is -lr * sign(grad) wherever the gradient is not tiny."""
    info, variant = VARIANTS[name], built(name)
    section = TUTORIAL[info.section]
    optimizer = getattr(variant, "optimizer", None)
    if section.update == "manual":
        assert optimizer is None, f"{name}: the tutorial updates by hand, not with {type(optimizer).__name__}"
        assert variant.learning_rate == section.learning_rate
    else:
        assert f"torch.optim.{type(optimizer).__name__}" == section.update
        assert [group["lr"] for group in optimizer.param_groups] == [section.learning_rate]
    variant.forward()
    variant.backward()
    grads = variant.gradients()
    before = {key: as_numpy(value) for key, value in parameters(variant).items()}
    variant.step()
    after = {key: as_numpy(value) for key, value in parameters(variant).items()}
    eps = np.finfo(np.dtype(info.default_dtype)).eps
    for key, grad in grads.items():
        moved = after[key] - before[key]
        if section.update == "torch.optim.Adam":
            big = np.abs(grad) > 1e-3
            assert big.mean() > 0.5
            np.testing.assert_allclose(moved[big], -section.learning_rate * np.sign(grad[big]),
                                       rtol=1e-2, atol=8 * eps * np.abs(before[key]).max())
        else:
            np.testing.assert_allclose(moved, -section.learning_rate * grad,
                                       rtol=1e-3, atol=8 * eps * np.abs(before[key]).max())


# The tutorial builds its optimisers with the rate alone (`torch.optim.SGD(model.parameters(),
# lr=learning_rate)`, `torch.optim.Adam(model.parameters(), lr=learning_rate)`): everything else is
# the constructor's default, written out here so that a changed default or argument turns red.
OPTIMIZER_DEFAULTS = {
    "torch.optim.SGD": {"momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False, "maximize": False},
    "torch.optim.Adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "maximize": False},
}


@pytest.mark.parametrize("name", [name for name in CPU_VARIANTS if TUTORIAL[VARIANTS[name].section].update != "manual"])
def test_the_optimiser_has_the_tutorials_settings_beyond_the_rate(name):
    """Adam's first step is -lr * sign(grad) whatever its betas: the settings are checked as such."""
    section = TUTORIAL[VARIANTS[name].section]
    (group,) = built(name).optimizer.param_groups
    assert {key: group[key] for key in OPTIMIZER_DEFAULTS[section.update]} == OPTIMIZER_DEFAULTS[section.update]


@pytest.mark.parametrize("name", CPU_VARIANTS)
def test_the_initial_weights_follow_the_sections_initialisation(name):
    section = TUTORIAL[VARIANTS[name].section]
    for key, value in parameters(built(name)).items():
        if key.startswith("b"):
            continue  # nn.Linear's own bias init, as in the tutorial
        weights = as_numpy(value)
        fan_in, fan_out = weights.shape
        spread = 4 / math.sqrt(2 * weights.size)  # four standard errors of a sample's std
        if section.init == "randn":
            assert weights.std() == pytest.approx(1.0, rel=spread)
        elif section.init == "xavier_normal":
            assert weights.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=spread)
        else:  # nn.Linear: uniform within 1/sqrt(fan_in)
            bound = 1 / math.sqrt(fan_in)
            assert np.abs(weights).max() <= bound
            assert weights.std() == pytest.approx(bound / math.sqrt(3), rel=spread)
