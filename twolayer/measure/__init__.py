"""What runs inside a timed process: the harness, timing, phases, the canary probe, device time and memory, launches, the peak."""
