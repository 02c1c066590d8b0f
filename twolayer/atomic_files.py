"""Writing report files so that a failure never leaves a half-written or clobbered file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it


def _naming(error: OSError, path: Path) -> OSError:
    """`error` with `path` as its file: a write that fails (a full disk) names no file, and a failed
    rename names the temporary; the reader wants the file they asked for."""
    error.filename, error.filename2 = str(path), None
    return error


def _stage(path: Path, content: str | bytes) -> Path:
    """`content` in a temporary file beside `path`, ready to be renamed over it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from None
    mode = "wb" if isinstance(content, bytes) else "w"
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes it private; a report is an ordinary file
        with os.fdopen(handle, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as out:
            out.write(content)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _naming(error, path) from None
        raise
    return Path(temporary)


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path` in one step."""
    write_all_atomically({path: content})


def write_all_atomically(files: dict[Path, str | bytes]) -> None:
    """Write every file to a temporary beside it first; only when all are written, rename each
    into place. A failure while writing leaves every existing file as it was."""
    staged: dict[Path, Path] = {}
    try:
        for path, content in files.items():
            staged[path] = _stage(path, content)
        for path, temporary in staged.items():
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise _naming(error, path) from None
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def writable_directory(path: Path) -> None:
    """Make `path` (and its parents) and prove a file can be made there, before a long job whose
    results would otherwise be lost at the end; the OSError names the path."""
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass
