"""Progress in logs: plain lines, one per 5 %, no carriage returns; a terminal gets bars."""

from __future__ import annotations

import contextlib

import pytest

from dmsps import progress
from dmsps.progress import LineProgress, progress_bar


def test_lines_every_five_percent_with_rate_and_postfix(capsys):
    bar = LineProgress(total=40, desc="train dmsps", unit="it", quiet_seconds=0)
    for i in range(40):
        bar.update(1)
        if i == 10:
            bar.set_postfix(loss="0.123")
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert len(lines) == 20  # 40 steps, a line every 2 (5 %), none repeated at close
    assert lines[0].startswith("train dmsps: 2/40 (5%) [00:00")
    assert lines[-1].startswith("train dmsps: 40/40 (100%)")
    assert "loss=0.123" in lines[-1] and "it/s" in lines[-1]


def test_short_work_prints_nothing(capsys):
    for _ in LineProgress(range(5), desc="quick"):  # done within QUIET_SECONDS
        pass
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("leave", "error", "expected"),
    [(True, False, ["work: 1/40 (2%)"]), (False, False, []), (True, True, [])],
)
def test_closing_line_only_for_a_kept_bar_that_ended_well(capsys, leave, error, expected):
    """A transient bar (leave=False) or one an error ends prints no closing line, so an
    error message stays the one line of its command."""
    with pytest.raises(ValueError) if error else contextlib.nullcontext():  # noqa: SIM117
        with LineProgress(total=40, desc="work", leave=leave, quiet_seconds=0) as bar:
            bar.update(1)  # below the 5 % step: only a closing line would show it
            if error:
                raise ValueError
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == expected


def test_the_environment_chooses_bars_or_lines(monkeypatch):
    monkeypatch.setenv("DMSPS_PROGRESS", "lines")
    assert isinstance(progress_bar(range(3)), LineProgress)
    monkeypatch.setenv("DMSPS_PROGRESS", "bars")
    assert not isinstance(progress_bar(range(3)), LineProgress)
    monkeypatch.delenv("DMSPS_PROGRESS")
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(progress_bar(range(3)), LineProgress)
