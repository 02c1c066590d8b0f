"""Run directories: the id a new run is written under."""

from __future__ import annotations

import time
from pathlib import Path

from twolayer.provenance import git_commit, host_name


def new_run_id(out: Path, now: float | None = None) -> str:
    """`<UTC time>-<host>-<short commit>`, with a suffix if that directory already exists."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    base = f"{stamp}-{host_name()}-{git_commit(short=True) or 'nocommit'}"
    run_id, suffix = base, 2
    while (out / run_id).exists() or (out / f".{run_id}.partial").exists():
        run_id, suffix = f"{base}-{suffix}", suffix + 1
    return run_id
