"""A `twolayer count` result (counters.json) read back as a table, with its provenance on every row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from twolayer.schema import COUNTERS_FILE, KEY, METRICS


def counters_frame(record: dict) -> pd.DataFrame:
    """The counters of one counters.json as a table, with its provenance on every row."""
    info = record["twolayer"]
    machine = info.get("machine", {})
    frame = pd.DataFrame(record["benchmarks"], columns=[*KEY, *METRICS, "aten_ops_varied", "ops_counted_by"])
    for column, value in (("run_id", info.get("run_id")), ("commit", info.get("commit")),
                          ("counted_threads", info.get("threads")), ("count_calls", info.get("calls")),
                          ("valgrind", info.get("valgrind")), ("cpu_model", machine.get("cpu_model")),
                          ("hardware", machine.get("hardware")), ("gpu_model", machine.get("gpu_model")),
                          ("cuda_version", machine.get("cuda_version")), ("torch_version", machine.get("torch_version")),
                          ("numpy_version", machine.get("numpy_version")),
                          ("python_version", machine.get("python_version"))):
        frame[column] = value
    return frame


def read_counters(path: Path) -> pd.DataFrame:
    """A counters.json (or a run directory holding one) as a table; ValueError with one line if not."""
    path = path / COUNTERS_FILE if path.is_dir() else path
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(record, dict) or (record.get("twolayer") or {}).get("kind") != "counters" \
            or not isinstance(record.get("benchmarks"), list):
        raise ValueError(f"{path}: not a `twolayer count` result (no counters)")
    return counters_frame(record)


def counters_beside(run_json: Path) -> Path | None:
    """The counters.json of the same run directory, if the run was counted too."""
    candidate = run_json.parent / COUNTERS_FILE
    return candidate if candidate.is_file() else None


def counted_side(paths: list[Path]) -> pd.DataFrame:
    """The counters of one side: each path a counters.json, a run directory, or a run's JSON with
    counters beside it; several runs of a side agree (the counts are deterministic), so their
    median is taken."""
    frames = []
    for path in paths:
        source = path if path.is_dir() or path.name == COUNTERS_FILE else counters_beside(path)
        if source is None:
            raise ValueError(f"{path}: no counters.json beside it; count with `twolayer count` or `twolayer run --counters`")
        frames.append(read_counters(source))
    table = pd.concat(frames)
    return table.groupby(list(KEY), dropna=False)[list(METRICS)].median().reset_index()
