"""Folder locks: a second writer on a run folder is refused; scribble saves wait."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dmsps.errors import DmspsError
from dmsps.io.lock import folder_lock, sole_writer


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
            from dmsps.io.lock import folder_lock, sole_writer
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


def test_an_error_of_the_block_itself_is_not_taken_for_a_held_folder(tmp_path):
    with pytest.raises(BlockingIOError, match="from the block"), sole_writer(tmp_path):
        raise BlockingIOError("from the block")


def test_a_waiting_lock_waits_for_the_holder(tmp_path):
    order = []

    def second():
        with folder_lock(tmp_path):  # blocks until the first holder leaves
            order.append("second")

    with folder_lock(tmp_path):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(timeout=10)
    assert order == ["first", "second"]
    with pytest.raises(BlockingIOError), folder_lock(tmp_path), folder_lock(tmp_path, wait=False):
        pass
