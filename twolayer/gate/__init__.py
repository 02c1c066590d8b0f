"""`twolayer gate`: paired, interleaved timing of two checkouts in worker processes, and its verdicts."""
