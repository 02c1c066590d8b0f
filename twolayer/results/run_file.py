"""A run's benchmarks.json read and checked field by field: a file that is not one is one clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from twolayer.problem import parse_size
from twolayer.schema import REQUIRED_EXTRA_INFO, REQUIRED_STATS


class ResultsError(ValueError):
    """A results file that cannot be used, with the reason in one line."""


def read_run(path: Path) -> dict:
    """A checked pytest-benchmark run of this suite: every field the tidy table reads is there and
    of its kind, so that a hand-edited file fails here, in one line naming the file and the field,
    rather than later inside pandas."""
    try:
        if path.is_dir():
            raise ResultsError(f"{path}: is a directory, not a run's JSON file")
        if not path.is_file():
            raise ResultsError(f"{path}: no such file")
        run = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise ResultsError(f"{path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ResultsError(f"{path}: not JSON ({str(error) or 'nested too deeply'})") from None
    if not isinstance(run, dict) or "benchmarks" not in run or "machine_info" not in run:
        raise ResultsError(f"{path}: not a pytest-benchmark run (no 'benchmarks' list and 'machine_info')")
    try:
        check_run(run)
    except (FieldError, ResultsError) as error:
        raise ResultsError(f"{path}: {error}") from None
    return run


class FieldError(ValueError):
    """A field of a run that the tidy table cannot read: `field 'stats.median' is NaN`."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        super().__init__(f"field {field!r} is {describe(value)}, expected {expected}")


def describe(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "infinite"
    kind = {type(None): "null", bool: "a boolean", str: "a string", list: "a list", dict: "an object"}.get(type(value))
    if kind in ("a list", "an object") or value is None:
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}" if kind else text


def check_run(run: dict) -> None:
    """Raise FieldError for the first field of `run` that `run_rows` could not read."""
    benchmarks = expect(run, "benchmarks", list, "a list of benchmarks")
    expect(run, "machine_info", dict, "an object")
    for field, kind in (("commit_info", dict), ("twolayer", dict)):
        expect(run, field, kind, "an object", optional=True)
    expect(run.get("commit_info") or {}, "id", str, "a string", name="commit_info.id", optional=True)
    expect(run.get("twolayer") or {}, "run_id", str, "a string", name="twolayer.run_id", optional=True)
    peaks = expect(run["machine_info"], "peak", dict, "an object", name="machine_info.peak", optional=True) or {}
    for key, peak in peaks.items():
        expect(peaks, key, dict, "an object", name=f"machine_info.peak.{key}")
        check_number(peak, "square_gflops", f"machine_info.peak.{key}", positive=True, optional=True)
    if not benchmarks:
        raise ResultsError("the run holds no benchmarks")
    for index, bench in enumerate(benchmarks):
        expect(benchmarks, index, dict, "an object", name=f"benchmarks[{index}]")
        name = bench.get("name")
        label = f"benchmark {name!r}" if isinstance(name, str) else f"benchmarks[{index}]"
        try:
            check_benchmark(bench)
        except (FieldError, ResultsError) as error:
            raise ResultsError(f"{label}: {error}") from None


def check_benchmark(bench: dict) -> None:
    """Check one benchmark's extra_info and statistics field by field; raise `FieldError` naming the first
    field that is missing or of the wrong kind."""
    extra = expect(bench, "extra_info", dict, "an object")
    stats = expect(bench, "stats", dict, "an object")
    missing = [k for k in REQUIRED_EXTRA_INFO if k not in extra] + [k for k in REQUIRED_STATS if k not in stats]
    if missing:
        raise ResultsError(f"lacks {', '.join(missing)} (made by another version of this suite?)")
    for field in ("variant", "phase", "device", "device_name"):
        expect(extra, field, str, "a string", name=f"extra_info.{field}")
    for field in ("dtype", "dtype_mode"):
        expect(extra, field, str, "a string or null", name=f"extra_info.{field}", optional=True)
    size = expect(extra, "size", str, "NxD_INxHxD_OUT, e.g. 64x1000x100x10", name="extra_info.size",
                  optional=extra["phase"] == "overhead")  # the harness's own rows have no size
    if size is not None:
        try:
            parse_size(size)
        except ValueError:
            raise FieldError("extra_info.size", size, "NxD_INxHxD_OUT, e.g. 64x1000x100x10") from None
    check_number(extra, "flops", "extra_info", integer=True)
    for field in ("torch_threads", "numpy_threads", "n", "d_in", "hidden", "d_out"):
        check_number(extra, field, "extra_info", integer=True, positive=True, optional=True)
    for field in ("compile_s", "canary_before_s", "canary_after_s", "device_busy_s"):
        check_number(extra, field, "extra_info", optional=True)
    for field in ("kernel_launches", "kernels", "peak_bytes"):
        check_number(extra, field, "extra_info", integer=True, optional=True)
    spans = expect(extra, "device_s", list, "a list of CUDA-event spans in seconds", name="extra_info.device_s",
                   optional=True) or []
    for index in range(len(spans)):
        check_number(spans, index, "extra_info.device_s", name=f"extra_info.device_s[{index}]")
    check_number(stats, "median", "stats", positive=True)  # every ratio divides by it
    for field in ("iqr", "mean", "stddev", "min", "max"):
        check_number(stats, field, "stats")
    check_number(stats, "rounds", "stats", integer=True, positive=True)
    raw = expect(stats, "data", list, "a list of timings", name="stats.data", optional=True) or []
    if all(type(t) in (int, float) for t in raw) and np.all(np.isfinite(raw)) and np.all(np.asarray(raw) >= 0):
        return  # thousands of timings: checked at once, and one by one only to name the bad one
    for index in range(len(raw)):
        check_number(raw, index, "stats.data", name=f"stats.data[{index}]")


def expect(container: dict | list, key: str | int, kind: type, expected: str, name: str | None = None,
           optional: bool = False) -> Any:
    """`container[key]`, which must be a `kind` (or absent or null when `optional`)."""
    value = container[key] if isinstance(container, list) else container.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise FieldError(name or str(key), value, expected)
    return value


def check_number(container: dict | list, key: str | int, parent: str, name: str | None = None, integer: bool = False,
                 positive: bool = False, optional: bool = False) -> None:
    """A finite number, not negative (and above zero when `positive`; whole when `integer`)."""
    value = container[key] if isinstance(container, list) else container.get(key)
    if value is None and optional:
        return
    name = name or f"{parent}.{key}"
    if not is_number(value) or not math.isfinite(value):
        raise FieldError(name, value, "an integer" if integer else "a number")
    if integer and value != int(value):
        raise FieldError(name, value, "an integer")
    if value < 0 or positive and value == 0:
        raise FieldError(name, value, "a positive number" if positive else "a number not below zero")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
