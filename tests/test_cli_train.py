"""The `twolayer list` and `twolayer train` commands, including every bad-input path."""

import subprocess
import sys
import warnings

import pytest
from one_line import assert_one_line

from twolayer.cli import main
from twolayer.devices import device_absent_reason
from twolayer.variants import VARIANTS


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit:  # argparse's own exits
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_every_variant_in_tutorial_order(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    lines = out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == list(VARIANTS)
    assert "方案一" in lines[0] and "float64" in lines[0]


def test_train_prints_the_tutorials_log(capsys):
    code, out, err = run_cli(capsys, "train", "numpy_manual", "--seed", "1")
    assert code == 0, err
    lines = out.splitlines()
    log = [line.split() for line in lines[1:-1]]
    assert [int(it) for it, _ in log] == list(range(0, 501, 50))
    losses = [float(loss) for _, loss in log]
    assert losses[0] > 1e6 and losses[-1] < 1e-2
    assert lines[-1] == f"final loss {log[-1][1]}"


def test_train_options(capsys):
    code, out, _ = run_cli(capsys, "train", "module_linear", "--iterations", "10", "--every", "5",
                           "--dtype", "float64", "--learning-rate", "0.001")
    assert code == 0
    assert "float64" in out.splitlines()[0] and "0.001" in out.splitlines()[0]
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["0", "5", "10"]


BAD_INPUT = [
    (["train", "no_such_variant"], "invalid choice: 'no_such_variant' (choose from 'numpy_manual'"),
    (["train", "numpy_manual", "--device", "mps"], "numpy_manual runs on cpu, not mps"),
    (["train", "torch_manual", "--device", "tpu"], "invalid choice: 'tpu' (choose from 'cpu', 'cuda', 'mps')"),
    (["train", "torch_manual", "--iterations", "ten"], "expected a non-negative integer, got 'ten'"),
    (["train", "torch_manual", "--every", "0"], "expected a positive integer, got '0'"),
    (["train", "torch_manual", "--seed", "-4"], "expected a non-negative integer, got '-4'"),
    (["train", "torch_manual", "--learning-rate", "nan"], "expected a finite positive number, got 'nan'"),
    (["train", "torch_manual", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["bogus"], "invalid choice: 'bogus'"),
]
if device_absent_reason("cuda"):
    BAD_INPUT.append((["train", "torch_manual", "--device", "cuda"], "cuda is not available here"))


@pytest.mark.parametrize("argv, message", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_line(err, message)


def test_divergence_is_reported_not_logged_as_nan(capsys):
    code, out, err = run_cli(capsys, "train", "torch_manual", "--learning-rate", "10")
    assert code == 1
    assert "nan" not in out.lower()
    assert_one_line(err, "loss became")


def test_numpy_divergence_is_one_line_without_overflow_warnings(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(capsys, "train", "numpy_manual", "--learning-rate", "1")
    assert code == 1
    assert_one_line(err, "twolayer train: error: loss became inf")
    assert [str(w.message) for w in caught] == []


@pytest.mark.slow
def test_module_entry_point_exits_cleanly_without_traceback():
    result = subprocess.run([sys.executable, "-m", "twolayer", "train", "nope"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
