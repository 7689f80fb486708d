"""One writer per output folder: a second process on the same run folder is refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dmsps.errors import DmspsError
from dmsps.io.lock import sole_writer


def test_a_second_writer_is_refused_and_the_folder_frees_afterwards(tmp_path):
    folder = tmp_path / "run"
    with sole_writer(folder):
        assert folder.is_dir()
        with (
            pytest.raises(DmspsError, match="another dmsps process is writing"),
            sole_writer(folder),
        ):
            pass
        with sole_writer(folder, enabled=False):  # torchrun ranks other than 0
            pass
    with sole_writer(folder):  # released when the block ends
        pass


def test_another_process_holding_the_folder_is_seen(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from dmsps.io.lock import sole_writer
            with sole_writer({str(folder)!r}):
                print("held", flush=True)
                sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DmspsError, match=str(folder)), sole_writer(folder):
            pass
    finally:
        holder.communicate("\n", timeout=30)
    with sole_writer(folder):  # the holder exited: free again
        pass
