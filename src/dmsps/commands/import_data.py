"""`dmsps import SOURCE ...`: convert a source dataset into the dmsps layout."""

from __future__ import annotations

import argparse

NAME = "import"
HELP = "convert a dataset (ACDC, WORD, BraTS 2020, your own NIfTI files) into the dmsps layout"


def _description() -> str:
    from dmsps.data.importers import IMPORTERS

    width = max(len(n) for n in IMPORTERS)
    rows = "\n".join(f"  {n.ljust(width)}  {imp.help}" for n, imp in IMPORTERS.items())
    return f"""\
Convert a dataset into the dmsps layout (nnU-Net v2 raw layout plus scribblesTr/, with
dataset.json and splits.json). Run `dmsps import SOURCE --help` for each source:

{rows}

Importers never write into the source, refuse a non-empty OUT unless --force, and
write dataset.json last (a folder without it is an unfinished import). Afterwards run
`dmsps check-data OUT`.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmsps.data.importers import IMPORTERS

    parser.description = _description()
    sub = parser.add_subparsers(dest="format", metavar="SOURCE", required=True)
    for name, imp in IMPORTERS.items():
        p = sub.add_parser(
            name,
            help=imp.help,
            description=imp.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        imp.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    from dmsps.data.importers import get_importer
    from dmsps.data.importers.common import print_warnings

    result = get_importer(args.format).run(args)
    print_warnings(result)
    print(result.summary())
    return 0
