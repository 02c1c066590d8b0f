"""Every variant's gradients agree with an independent float64 reference at the same point."""

import numpy as np
import pytest
from device_params import DEVICES
from reference import finite_difference, reference_gradients

from twolayer.problem import Problem, make_data, make_weights
from twolayer.variants import VARIANTS, build, resolve, variant_device_reason

# Relative error in the gradient's norm that each dtype's rounding allows.
TOLERANCE = {"float32": 2e-5, "float64": 1e-12}


def relative_error(actual, expected):
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


def gradients_at_start(variant, name):
    """Forward and backward at the initial weights; a variant that cannot split them runs one
    whole iteration, whose gradients are also those at the initial weights."""
    if "backward" in VARIANTS[name].phases:
        variant.forward()
        variant.backward()
    else:
        variant.iteration()
    return variant.gradients()


def skip_unless_usable(name, device):
    reason = variant_device_reason(name, device)
    if reason is not None:
        pytest.skip(reason)


def reference_for(name, problem):
    info = VARIANTS[name]
    data, weights = make_data(problem), make_weights(problem, info.init)
    biases = (weights.b1, weights.b2) if info.bias else (None, None)
    return reference_gradients(data.x, data.y, weights.w1, weights.w2, *biases, reduction=info.loss_reduction)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradients_match_float64_reference(name, dtype, device):
    skip_unless_usable(name, device)
    problem = resolve(name, Problem(dtype=dtype, n=16, d_in=50, hidden=20, d_out=5))
    variant = build(name, problem, device)
    actual = gradients_at_start(variant, name)
    expected_loss, expected = reference_for(name, problem)
    assert variant.loss() == pytest.approx(expected_loss, rel=TOLERANCE[dtype] * 10)
    assert set(actual) == set(expected)
    for param, gradient in expected.items():
        assert actual[param].shape == gradient.shape
        assert relative_error(actual[param], gradient) < TOLERANCE[dtype], param


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradients_at_tutorial_size(name):
    device = VARIANTS[name].devices[0]
    skip_unless_usable(name, device)
    problem = resolve(name, Problem(dtype="float64"))
    actual = gradients_at_start(build(name, problem, device), name)
    _, expected = reference_for(name, problem)
    for param, gradient in expected.items():
        assert relative_error(actual[param], gradient) < 1e-12, param


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reference_agrees_with_finite_differences(reduction):
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    params = {"w1": rng.standard_normal((5, 4)), "w2": rng.standard_normal((4, 3)),
              "b1": rng.standard_normal(4), "b2": rng.standard_normal(3)}

    def loss_of():
        return reference_gradients(x, y, **params, reduction=reduction)[0]

    _, gradients = reference_gradients(x, y, **params, reduction=reduction)
    for name, array in params.items():
        for index in np.ndindex(array.shape):
            numeric = finite_difference(loss_of, array, index)
            assert numeric == pytest.approx(gradients[name][index], rel=1e-6, abs=1e-8), (name, index)


def test_step_moves_weights_against_the_gradient():
    problem = resolve("torch_manual", Problem(dtype="float64", n=8, d_in=12, hidden=6, d_out=3))
    variant = build("torch_manual", problem)
    before = variant.w1.clone()
    variant.forward()
    variant.backward()
    gradient = variant.gradients()["w1"]
    variant.step()
    np.testing.assert_allclose(variant.w1.numpy(), before.numpy() - problem.learning_rate * gradient, rtol=1e-12)
