"""`twolayer count`: deterministic counters (instructions under callgrind, aten ops, bytes) per benchmark."""
