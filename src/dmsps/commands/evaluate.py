"""`dmsps evaluate PRED GT`: Dice, HD95 and ASD per class, written as CSV and JSON."""

from __future__ import annotations

import argparse

from dmsps.errors import DmspsError

NAME = "evaluate"
HELP = "score predicted segmentations against ground truth (Dice, HD95, ASD)"
DESCRIPTION = """\
Score a folder of predicted label maps against the ground truth, per foreground class.

PRED and GT are folders of NIfTI label maps matched by file name (<case>.nii.gz or .nii).
GT may also be a dataset folder (dmsps layout): its labelsTs/ and labelsTr/ are used, and
dataset.json gives the number of classes and their names. The spacing comes from GT; a
prediction must have the same shape as its ground truth.

Metrics (the conventions of MONAI's compute_hausdorff_distance / average surface distance):
  Dice  2|P∩G| / (|P| + |G|)
  HD95  max of the two directed 95th percentiles of surface-to-surface distances, in mm
  ASD   mean of all surface distances pred->gt and gt->pred together, in mm
  A surface voxel is a mask voxel with a face neighbour outside the mask (or the image).

Empty masks:
  both prediction and ground truth empty  ->  Dice 1, HD95 0, ASD 0
  exactly one of them empty               ->  Dice 0, HD95 and ASD undefined (nan): left
                                              out of the means and counted as 'undefined'

--convention medpy scores as the authors' test scripts do (medpy), so figures can be set
beside the paper's: a class empty in the prediction or the ground truth gets Dice 0,
HD95 0 and ASD 0, counted in the means; HD95 is the 95th percentile of the pooled
distances of both directions; ASD is the mean of the pred->gt distances. Its reports are
metrics_medpy.csv, summary_medpy.csv and summary_medpy.json; --convention both writes
both sets and prints both tables, each naming its convention.

Writes metrics.csv (case, class, dice, hd95, asd), summary.csv and summary.json (mean ±
std over cases per class, and of the per-case mean over foreground classes) into --out,
default PRED/../<PRED name>_metrics, and prints the summary table. Evaluating again
rewrites the same results; reports that hold other results (e.g. of earlier predictions)
are replaced only with --force.

examples:
  dmsps evaluate predictions/ labels/
  dmsps evaluate predictions/ datasets/cardiac --out results/cardiac
  dmsps evaluate predictions/ labels/ --convention both
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", metavar="PRED", help="folder of predicted label maps")
    parser.add_argument(
        "gt", metavar="GT", help="folder of ground-truth label maps, or a dataset folder"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="folder for metrics.csv, summary.csv, summary.json "
        "(default: PRED/../<PRED name>_metrics)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        metavar="N",
        help="number of classes including background (default: from GT's dataset.json, "
        "else the highest ground-truth label + 1)",
    )
    parser.add_argument(
        "--class-names",
        metavar="A,B,C",
        help="comma-separated names for label values 0..N-1 (background first), "
        "or for the foreground classes 1..N-1 only",
    )
    parser.add_argument(
        "--convention",
        choices=("monai", "medpy", "both"),
        default="monai",
        help="how empty classes and distances are scored: monai (ours, default), medpy "
        "(the authors' test scripts, for comparing with the paper) or both",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="warn about predictions without ground truth (and vice versa) instead of failing",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace reports in --out that hold other results (default: refuse)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from dmsps.eval.evaluation import default_out_dir, evaluate_folders, format_table

    CONVENTION_FILES = {
        "monai": "metrics.csv, summary.csv and summary.json",
        "medpy": "metrics_medpy.csv, summary_medpy.csv and summary_medpy.json",
    }

    names = None
    if args.class_names is not None:
        names = [n.strip() for n in args.class_names.split(",")]
        if not all(names):
            raise DmspsError(f"--class-names {args.class_names!r} has an empty name")
    if args.classes is not None and args.classes < 2:
        raise DmspsError(
            f"--classes must be at least 2 (background and one class), got {args.classes}"
        )
    out = args.out if args.out is not None else default_out_dir(args.pred)
    summary = evaluate_folders(
        args.pred,
        args.gt,
        out,
        class_names=names,
        num_classes=args.classes,
        allow_missing=args.allow_missing,
        conventions=("monai", "medpy") if args.convention == "both" else (args.convention,),
        force=args.force,
        progress=not args.quiet,
    )
    tables = [summary, *summary.get("other_conventions", {}).values()]
    for i, table in enumerate(tables):
        if i:
            print()
        print(format_table(table))
    names = [f"{CONVENTION_FILES[t['conventions']['name']]}" for t in tables]
    print(f"wrote {'; '.join(names)} to {out}")
    return 0
