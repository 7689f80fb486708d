"""The ``dmsps`` command line. Each subcommand lives in ``dmsps.commands.<name>``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``
returning an exit code. Expected failures raise DmspsError and are printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dmsps import __version__
from dmsps.errors import DmspsError, describe_os_error

COMMANDS = [
    "demo",
    "run",
    "import_data",
    "check_data",
    "synth",
    "scribble",
    "train",
    "expand",
    "predict",
    "evaluate",
    "compare",
    "plan",
    "export",
    "zoo",
    "annotate",
    "suggest",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmsps",
        description=(
            "Scribble-supervised medical image segmentation with DMSPS. "
            "Start with `dmsps demo`; run `dmsps COMMAND --help` for each step."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dmsps {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"dmsps.commands.{name}")
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except DmspsError as exc:
        print(f"dmsps {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused a path the user gave (e.g. --out)
        print(f"dmsps {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"dmsps {args.command}: interrupted; rerun the same command to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
