"""`dmsps check-data`: validate a dataset folder before spending hours training on it."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "check-data"
HELP = "check a dataset folder and list every problem with the file it concerns"
DESCRIPTION = """\
Check a dataset folder (nnU-Net raw layout plus scribblesTr/, see `dmsps import`) and
list every problem with the file it concerns, one per line:

  PATH: error: PROBLEM      the dataset cannot be used as it is
  PATH: warning: PROBLEM    worth knowing, does not stop training

Checked: dataset.json and splits.json; that every split case exists; images, labels
and scribbles present (scribbles are required for train and val cases, labels are
needed to evaluate val and test cases); readable NIfTI files; the same shape and
spacing for every channel, label and scribble of a case; no NaN/Inf intensities;
label values in 0..C-1 and scribble values in 0..C (C = unannotated); at least one
annotated scribble voxel per case; stray or non-NIfTI files in the data folders.

Exit status: 0 when there is no error (warnings allowed, unless --strict), 1 when
problems were found, 2 when the folder cannot be checked at all.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DIR", type=Path, help="dataset folder")
    parser.add_argument(
        "--strict", action="store_true", help="fail (exit 1) on warnings too, not only errors"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the summary, not each problem"
    )


def run(args: argparse.Namespace) -> int:
    from dmsps.data.check import check_dataset
    from dmsps.errors import DmspsError

    if not args.dataset.is_dir():
        raise DmspsError(f"{args.dataset}: dataset folder not found")
    report = check_dataset(args.dataset, progress=True)
    if not args.quiet:
        for line in report.problem_lines():
            print(line)
    print(report.summary())
    failed = not report.ok or (args.strict and bool(report.warnings))
    if args.strict and report.ok and report.warnings:
        print("--strict: warnings count as failures")
    return 1 if failed else 0
