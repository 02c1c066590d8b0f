"""twolayer: a benchmarking harness for the classic two-layer ReLU network, trained nine ways."""

__version__ = "0.1.0"

# Bumped when a benchmark's meaning changes (phases, timed region, recorded fields), so that
# stored results from older suites are recognised rather than compared blindly.
SUITE_VERSION = 1
