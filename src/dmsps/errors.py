"""User-facing errors.

Anything a user can cause (bad path, bad file, bad option) raises ``DmspsError`` so the
command line prints one clear line instead of a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path


def listing(items, limit: int) -> str:
    """The first ``limit`` items, comma-separated, with ", ..." when there are more: how
    messages name offending values, cases or folders without flooding the line."""
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


class DmspsError(Exception):
    """An expected failure caused by input or configuration; shown without a traceback."""


class DataError(DmspsError):
    """A problem with one file of a dataset; the message always names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


#: What to do when the file system refuses a path, by errno.
_OS_HINTS = {
    errno.ENOTDIR: "part of this path is a file, not a folder; choose another path",
    errno.EEXIST: "exists and is not a folder; choose another path or move the file away",
    errno.EACCES: "permission denied; choose a folder you can write to, or fix its permissions",
    errno.EPERM: "permission denied; choose a folder you can write to, or fix its permissions",
    errno.EROFS: "read-only file system; choose a folder you can write to",
    errno.ENOSPC: "no space left on the device; free some space or choose another folder",
    errno.EISDIR: "is a folder where a file is expected; choose another path",
    errno.ENOENT: "no such file or folder; check the path",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system failure (an output folder that cannot be created or
    written, a full disk): the path and what to do, instead of a traceback."""
    path = exc.filename if exc.filename is not None else exc.filename2
    hint = _OS_HINTS.get(exc.errno or 0) or exc.strerror or str(exc)
    return f"{path}: {hint}" if path is not None else hint


def missing_extra(extra: str, feature: str, exc: ImportError) -> DmspsError:
    """One line for an optional feature whose packages are not installed: which package
    is missing and the extra that brings it (``pip install "dmsps[onnx]"``)."""
    return DmspsError(
        f"{feature} needs the optional '{extra}' packages ({exc.name or exc} is missing): "
        f'pip install "dmsps[{extra}]" (in a source checkout: pip install -e ".[{extra}]")'
    )
