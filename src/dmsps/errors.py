"""User-facing errors.

Anything a user can cause (bad path, bad file, bad option) raises ``DmspsError`` so the
command line prints one clear line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DmspsError(Exception):
    """An expected failure caused by input or configuration; shown without a traceback."""


class DataError(DmspsError):
    """A problem with one file of a dataset; the message always names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
