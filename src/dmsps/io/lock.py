"""One writer per output folder: a second `dmsps run` or `dmsps train` on the same folder
would delete the first one's temporary files (they look like a killed run's leftovers)
and interleave checkpoints, so it is refused at the start instead."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dmsps.errors import DmspsError


@contextlib.contextmanager
def sole_writer(folder: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold a non-blocking exclusive ``flock`` on ``folder`` (made if missing) while the
    block runs; refuse with a clear message when another process holds it. The lock goes
    with the process, so a killed run never leaves the folder locked, and no file is
    made. ``enabled=False`` (torchrun ranks other than 0) does nothing."""
    if not enabled:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard, as before
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DmspsError(
                f"{folder}: another dmsps process is writing to this folder; wait for it "
                "to finish (then rerun to resume or reuse it) or choose another output folder"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
