"""Path checks shared by every command that writes beside a user's input."""

from __future__ import annotations

from pathlib import Path


def is_within(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (after resolving links).

    Commands use it to refuse writing into an input folder: we never modify user data.
    """
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents
