"""Folder locks (``flock`` on the folder's descriptor: no file is made, and the lock goes
with the process, so a killed run never leaves a folder locked).

One writer per output folder: a second `dmsps run` or `dmsps train` on the same folder
would delete the first one's temporary files (they look like a killed run's leftovers)
and interleave checkpoints, so it is refused at the start (``sole_writer``). Scribble
saves from two annotation servers on one dataset wait for each other (``folder_lock``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dmsps.errors import DmspsError


@contextlib.contextmanager
def folder_lock(folder: str | Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on the existing ``folder`` while the block runs. ``wait``:
    block until it is free; otherwise raise ``BlockingIOError`` when another process
    holds it. Without POSIX ``fcntl`` there is no lock (atomic renames remain)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def sole_writer(folder: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``folder`` (made if missing) while the block runs; refuse with a clear
    message when another process holds it. ``enabled=False`` (torchrun ranks other than
    0) does nothing."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    held = False
    try:
        with folder_lock(folder, wait=False):
            held = True
            yield
    except BlockingIOError:
        if held:  # raised by the block itself, not by the lock
            raise
        raise DmspsError(
            f"{folder}: another dmsps process is writing to this folder; wait for it "
            "to finish (then rerun to resume or reuse it) or choose another output folder"
        ) from None
