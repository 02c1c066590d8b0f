import math

import numpy as np
import pytest

from twolayer.problem import Problem, make_data, make_weights, parse_size


def test_defaults_are_the_tutorials():
    problem = Problem()
    assert (problem.n, problem.d_in, problem.hidden, problem.d_out) == (64, 1000, 100, 10)
    assert problem.iterations == 500
    assert problem.size_label == "64x1000x100x10"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"d_in": -3}, "d_in must be a positive integer"),
        ({"hidden": 2.5}, "hidden must be a positive integer"),
        ({"d_out": True}, "d_out must be a positive integer"),
        ({"iterations": -1}, "iterations must be a non-negative integer"),
        ({"dtype": "float16"}, "unknown dtype 'float16'"),
        ({"learning_rate": math.nan}, "learning_rate must be a finite positive number"),
        ({"learning_rate": math.inf}, "learning_rate must be a finite positive number"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite positive number"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_problems_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Problem(**kwargs)


def test_data_and_weights_are_identical_for_a_seed_and_differ_across_seeds():
    problem = Problem(dtype="float64")
    a, b = make_data(problem), make_data(problem)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(make_weights(problem).w1, make_weights(problem).w1)
    other = make_data(Problem(dtype="float64", seed=1))
    assert not np.array_equal(a.x, other.x)


def test_float32_data_is_the_float64_data_rounded():
    x64 = make_data(Problem(dtype="float64")).x
    x32 = make_data(Problem(dtype="float32")).x
    assert x32.dtype == np.float32
    np.testing.assert_array_equal(x32, x64.astype(np.float32))


def test_weight_schemes_follow_the_tutorials_distributions():
    problem = Problem(dtype="float64")
    normal = make_weights(problem, "normal")
    assert normal.w1.shape == (1000, 100) and normal.w2.shape == (100, 10)
    assert abs(normal.w1.std() - 1.0) < 0.02
    xavier = make_weights(problem, "xavier_normal")
    assert abs(xavier.w1.std() - math.sqrt(2 / 1100)) < 0.001
    default = make_weights(problem, "linear_default")
    assert np.abs(default.w1).max() <= 1 / math.sqrt(1000)
    assert np.abs(default.w2).max() <= 1 / math.sqrt(100)
    assert np.abs(normal.b1).max() <= 1 / math.sqrt(1000)


def test_data_needs_a_resolved_dtype():
    with pytest.raises(ValueError, match="dtype is unset"):
        make_data(Problem())


@pytest.mark.parametrize("text", ["64x1000x100", "64x0x100x10", "axbxcxd", "64x1000x100x10x1", ""])
def test_parse_size_rejects_bad_sizes(text):
    with pytest.raises(ValueError, match="bad size"):
        parse_size(text)


def test_parse_size():
    assert parse_size("8X16x4x2") == (8, 16, 4, 2)
