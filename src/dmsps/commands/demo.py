"""`dmsps demo` (not implemented yet)."""

from __future__ import annotations

import argparse

from dmsps.errors import DmspsError

NAME = "demo"
HELP = "(not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise DmspsError("not implemented yet")
