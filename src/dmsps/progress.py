"""Progress of long work on stderr: a redrawn tqdm bar in a terminal, plain lines elsewhere.

A bar redraws itself with carriage returns, which is right in a terminal and wrong in a
log file, CI output or ``nohup``: a run's log became one 1 MB line of redrawn bars. When
stderr is not a terminal, ``progress_bar`` prints one line per step instead: every 5 % of
the total (and at the end), or every 30 s when the total is unknown, each with the
elapsed time, the rate and the last postfix (loss, lr). Work done within two seconds
prints nothing, nor does the closing line of a transient bar (``leave=False``) or of one
left by an error, so short steps and error messages stay one line.
``DMSPS_PROGRESS=bars|lines`` forces one or the other.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

#: Share of the total between two plain lines, and the interval without a total.
LINE_STEP = 0.05
LINE_SECONDS = 30.0
#: Work shorter than this prints no line at all.
QUIET_SECONDS = 2.0


def _use_bars() -> bool:
    mode = os.environ.get("DMSPS_PROGRESS", "").strip().lower()
    if mode in ("bars", "bar"):
        return True
    if mode in ("lines", "line"):
        return False
    return sys.stderr.isatty()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class LineProgress:
    """The part of tqdm's interface dmsps uses, printing plain lines (see module doc)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        initial: int = 0,
        leave: bool = True,
        quiet_seconds: float = QUIET_SECONDS,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable, self.leave, self.quiet_seconds = disable, leave, quiet_seconds
        self.n = self.start_n = initial
        self.postfix = ""
        self.t0 = self.last_print = time.perf_counter()
        self._printed_at = initial
        self._closed = False

    # tqdm's interface --------------------------------------------------------------------
    @property
    def format_dict(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start_n
        return {"n": self.n, "total": self.total, "rate": done / elapsed if elapsed > 0 else None}

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is not None:  # an error: its message follows, no closing line before it
            self._closed = True
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.perf_counter()
        if now - self.t0 < self.quiet_seconds:
            return
        if self.total:
            step = max(1, round(self.total * LINE_STEP))
            due = self.n - self._printed_at >= step or self.n >= self.total
        else:
            due = now - self.last_print >= LINE_SECONDS
        if due and self.n != self._printed_at:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, message: str) -> None:
        if not self.disable:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        long_enough = time.perf_counter() - self.t0 >= self.quiet_seconds
        if self.leave and long_enough and not self.disable and self.n != self._printed_at:
            self._line()

    # ---------------------------------------------------------------------------------
    def _line(self) -> None:
        now = time.perf_counter()
        rate = self.format_dict["rate"]
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        speed = f", {rate:.2f} {self.unit}/s" if rate else ""
        extra = f", {self.postfix}" if self.postfix else ""
        label = f"{self.desc}: " if self.desc else ""
        print(
            f"{label}{count}{share} [{_clock(now - self.t0)}{speed}{extra}]",
            file=sys.stderr,
            flush=True,
        )
        self.last_print, self._printed_at = now, self.n


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    initial: int = 0,
) -> Any:
    """A tqdm bar on a terminal, a ``LineProgress`` elsewhere; same calls on both."""
    if _use_bars():
        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            disable=disable,
            leave=leave,
            initial=initial,
            dynamic_ncols=True,
        )
    return LineProgress(
        iterable, total=total, desc=desc, unit=unit, disable=disable, initial=initial, leave=leave
    )


def note(message: str) -> None:
    """A line on stderr that does not break a running bar."""
    if _use_bars():
        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)
