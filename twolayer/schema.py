"""What a run directory holds and how its records are keyed: file names, the keys that make two
records the same benchmark, and the counters' metrics, declared once for the code that writes them
and the code that reads them back."""

from __future__ import annotations

# A run directory's files.
RESULT_FILE = "benchmarks.json"  # pytest-benchmark's JSON, with the suite's extra_info and provenance
PEAK_FILE = "peak.json"
PASSED_FILE = "passed.txt"  # the tests that passed (twolayer.run.pytest_outcomes); read after an interrupt, then deleted
COUNTERS_FILE = "counters.json"
INTERRUPTED_SUFFIX = "-interrupted"  # the directory of a run stopped by Ctrl-C or SIGTERM

# A benchmark's record: the extra_info that `twolayer.measure.harness.record` writes for every
# benchmark (it checks that it wrote exactly these), and what `twolayer.results.run_file` requires
# of a run, old runs included (the fields every version of the suite has written).
CASE_FIELDS = ("suite_version", "variant", "phase", "device", "device_name", "dtype", "dtype_mode", "n", "d_in",
               "hidden", "d_out", "size", "learning_rate", "flops", "torch_threads", "numpy_threads", "pass",
               "world_size", "scaling")
REQUIRED_EXTRA_INFO = ("variant", "phase", "device", "device_name", "dtype", "size", "flops",
                       "torch_threads", "numpy_threads")
REQUIRED_STATS = ("median", "iqr", "mean", "stddev", "min", "max", "rounds")  # pytest-benchmark's

# The same benchmark in two runs or two trees.
MATCH = ("device", "variant", "phase", "dtype", "dtype_mode", "size", "world_size", "scaling")
# what a side from before distributed variants existed says of its cases: one rank, no scaling
MATCH_DEFAULTS = {"world_size": 1, "scaling": ""}

# The verdicts of compare and the gate, in the order reports list them.
VERDICTS = ("slower", "faster", "inconclusive", "unchanged", "harness", "only_in_base", "only_in_new")
CHANGED_VERDICTS = tuple(v for v in VERDICTS if v not in ("unchanged", "harness"))  # what a pull request reads first

# The counters of `twolayer count`. launches and gpu_kernels: cuda only (the timing side's one
# profiled call records its own `kernel_launches` and `kernels`; these are the mean of the counted calls).
METRICS = ("instructions", "aten_ops", "alloc_bytes", "launches", "gpu_kernels")
OPS_METRICS = tuple(m for m in METRICS if m != "instructions")  # the native worker's
KEY = ("device", "variant", "phase", "dtype", "dtype_mode", "size")  # a counted benchmark
EMPTY = "harness_empty"  # an empty call counted the same way: what the counting itself adds
