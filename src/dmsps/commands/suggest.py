"""`dmsps suggest`: the unscribbled slices (or cases) where the model is least sure."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "suggest"
HELP = "rank the slices (or cases) without scribbles by the model's uncertainty there"
DESCRIPTION = """\
Predict every case of a split (default: train) with the model and rank the slices that
hold no scribble yet by the model's uncertainty there. Per voxel: u, the normalised
entropy of the mean of both decoders' probabilities, and d = 1 where the two decoders'
labels differ; a slice scores the mean of (u + d) / 2 over its voxels (a case, with
--unit case, over all of its voxels, and only cases without any scribble are ranked).
Highest first; equal scores go by case name, then slice: the same model and data always
give the same list. Slices are (Y, X) planes, index z of the array (the axial slices of
a CT, the short-axis slices of cine-MRI). docs/annotate.md explains the rule.

Measured on ACDC at a small CPU budget (docs/results.md, section 10), revealing slices
in this order did worse than at random: the top of the list crowds one end of the
stacks. Take slices from several cases and positions, not only the first few listed;
--spread does that for you (docs/annotate.md).

`dmsps annotate DATA --model ...` shows the same ranking behind its "Next" button.

examples:
  dmsps suggest data/acdc --model runs/acdc --top 10
  dmsps suggest data/word --model runs/word/stage2/checkpoints/best.pt --unit case --json next.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="DATA", help="dataset folder")
    parser.add_argument(
        "--model",
        required=True,
        metavar="CKPT|RUN_DIR",
        help="a checkpoint (.pt), a `dmsps run` folder, or a shipped model's name",
    )
    parser.add_argument("--top", type=int, default=20, help="how many to list (default 20)")
    parser.add_argument("--unit", choices=("slice", "case"), default="slice")
    parser.add_argument(
        "--spread",
        action="store_true",
        help="slices: take the ranking in turns from five bands of position in the stack, "
        "one slice per case until every case has given one (variety; docs/annotate.md)",
    )
    parser.add_argument("--split", default="train", help="split to rank (default train)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--json", type=Path, default=None, help="also write the ranking here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from dmsps.annotate import suggestions
    from dmsps.data.layout import Dataset
    from dmsps.errors import DmspsError
    from dmsps.io.atomic import write_json

    if args.top < 1:
        raise DmspsError(f"--top must be at least 1, got {args.top}")
    if args.spread and args.unit != "slice":
        raise DmspsError("--spread orders slices; leave it out with --unit case")
    ds = Dataset(args.dataset)
    cases = ds.split(args.split)
    if not cases:
        raise DmspsError(f"{ds.root}: split '{args.split}' has no cases")
    predictor = suggestions.load_predictor(args.model, ds, args.device)
    flags = suggestions.scribble_flags(ds, cases)
    scores = suggestions.score_cases(predictor, ds, cases, progress=not args.quiet)
    if args.spread:
        ranking = suggestions.spread(suggestions.rank(scores, flags, "slice"), scores, args.top)
    else:
        ranking = suggestions.rank(scores, flags, args.unit, args.top)
    if args.json is not None:
        write_json(
            args.json,
            {
                "dataset": str(ds.root),
                "model": str(predictor.path),
                "split": args.split,
                "unit": args.unit,
                "spread": args.spread,
                "suggestions": [s.to_json() for s in ranking],
            },
        )
    if not ranking:
        what = "slice" if args.unit == "slice" else "case"
        print(f"no {what} without scribbles in split '{args.split}': nothing to suggest")
        return 0
    width = max(len("case"), *(len(s.case) for s in ranking))
    head = f"{'rank':>4}  {'case':<{width}}  {'slice':>5}  {'score':>6}  {'entropy':>7}"
    print(f"{head}  disagreement")
    for i, s in enumerate(ranking, 1):
        z = "-" if s.slice is None else str(s.slice)
        print(
            f"{i:>4}  {s.case:<{width}}  {z:>5}  {s.score:6.4f}  {s.entropy:7.4f}  "
            f"{s.disagreement:.4f}"
        )
    return 0
