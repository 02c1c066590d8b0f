"""Small pytest-benchmark runs with chosen timings, in the suite's own schema (from tests/data/cpu_run.json)."""

import copy
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
TEMPLATE = json.loads((DATA / "cpu_run.json").read_text())


def bench(variant, phase, raw, device="cpu", device_name="Test CPU", dtype="float32", size="64x1000x100x10",
          flops=1_000_000):
    """One benchmark entry whose stats are derived from `raw` (seconds) the way pytest-benchmark does."""
    raw = np.asarray(raw, dtype=float)
    q1, q3 = np.percentile(raw, [25, 75])
    return {
        "group": f"{device} {phase} {dtype} {size}",
        "name": f"test_phase[{device}-{phase}-{dtype}-{size}-{variant}]",
        "extra_info": {"suite_version": 1, "variant": variant, "phase": phase, "device": device,
                       "device_name": device_name, "dtype": dtype, "size": size, "n": 64, "d_in": 1000,
                       "hidden": 100, "d_out": 10, "flops": flops, "torch_threads": 2, "numpy_threads": 2},
        "stats": {"min": raw.min(), "max": raw.max(), "mean": raw.mean(), "stddev": raw.std(ddof=1),
                  "rounds": raw.size, "median": float(np.median(raw)), "iqr": q3 - q1, "data": raw.tolist()},
    }


def write_run(path, benchmarks, host="cpubox", run_id=None):
    run = copy.deepcopy(TEMPLATE)
    run["benchmarks"] = benchmarks
    run["machine_info"]["twolayer_host"] = host
    run["twolayer"]["run_id"] = run_id or path.stem
    path.write_text(json.dumps(run))
    return path


def constant(median, rounds=5):
    """Raw timings with the given median and a small, known spread."""
    return [median * f for f in np.linspace(0.99, 1.01, rounds)]
