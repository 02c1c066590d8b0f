"""Writing report files so that a failure never leaves a half-written or clobbered file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; a report is an ordinary file
        with os.fdopen(handle, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as out:
            out.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_all_atomically(files: dict[Path, str | bytes]) -> None:
    """Write several files, each atomically, after all of their contents exist."""
    for path, content in files.items():
        write_atomically(path, content)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
