"""twolayer: a benchmarking harness for the classic two-layer ReLU network, trained nine ways."""

__version__ = "0.1.0"
