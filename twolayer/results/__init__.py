"""Run directories read back into tables: the tidy table of a run's benchmarks and its counters."""
