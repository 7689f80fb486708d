"""`dmsps synth`: generate a synthetic dataset with dense labels and simulated scribbles."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "generate a synthetic dataset (short-axis cardiac MRI with scribbles)"
DESCRIPTION = """\
Generate a synthetic dataset in the dmsps layout, ready for `dmsps train`.

`cardiac` draws short-axis cine-MRI-like stacks (slices, size, size) with dense labels
0 background, 1 RV, 2 myocardium, 3 LV, simulated scribbles for the train and val
cases, and a 60/20/20 train/val/test split in splits.json. The same --seed always gives
the same files.

example:
  dmsps synth cardiac data/synth --cases 40 --size 96 --seed 0
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["cardiac"], help="what to generate")
    parser.add_argument(
        "out", metavar="OUT", help="output dataset folder (must be empty or absent)"
    )
    parser.add_argument("--cases", type=int, default=40, help="number of cases (default 40)")
    parser.add_argument("--size", type=int, default=96, help="in-plane size in pixels (default 96)")
    parser.add_argument("--slices", type=int, default=10, help="slices per case (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--density",
        type=float,
        default=1.0,
        help="scribble length as a fraction of the full stroke, in (0, 1] (default 1)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset in OUT"
    )


def run(args: argparse.Namespace) -> int:
    from dmsps.data.synth.cardiac import make_cardiac_dataset

    out = make_cardiac_dataset(
        args.out,
        cases=args.cases,
        size=args.size,
        slices=args.slices,
        seed=args.seed,
        density=args.density,
        progress=True,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.cases} synthetic cardiac cases to {out}")
    return 0
