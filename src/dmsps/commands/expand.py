"""`dmsps expand`: stage-2 seeds from a stage-1 model."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmsps.errors import DmspsError
from dmsps.io.paths import is_within

NAME = "expand"
HELP = "expand scribbles with a stage-1 model's confident predictions"
DESCRIPTION = """Run a stage-1 checkpoint on the training images and write expanded seeds.

Per voxel: p = mean softmax of both decoders, u = normalised entropy; voxels with
u < --threshold take argmax(p); per slice (2D models) or volume (3D models) and class only
the largest connected component stays; with --target ignore the rest is unannotated and
the original scribbles are kept, with --target dense the rest is background. OUT becomes
a scribble-layout folder (one NIfTI per case) usable with `dmsps train --scribble-dir
OUT`, plus expand_summary.json (pixels added per class and, when labels exist, their accuracy).

Rerunning the same command resumes: seeds already in OUT are kept. OUT holding an
expansion with other settings (checkpoint, --threshold, --tta, --target, --aux-dropout,
--background-margin) is refused; --force computes every seed again and replaces it.
"""


#: The options an expansion summary records, each with the value that summaries written
#: before it existed were made with (None: recorded since the first summary).
RECORDED = {"threshold": None, "tta": None, "target": None, "aux_dropout": False,
            "background_margin": 0}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="stage-1 checkpoint (best.pt)")
    parser.add_argument("dataset", type=Path, help="dataset folder")
    parser.add_argument("out", type=Path, help="folder for the expanded seeds")
    parser.add_argument("--threshold", type=float, default=0.1, help="uncertainty threshold")
    parser.add_argument("--tta", action="store_true", help="also average over flips")
    parser.add_argument(
        "--target",
        choices=("ignore", "dense"),
        default="ignore",
        help="ignore: uncertain voxels unlabelled, scribbles kept (default); dense: "
        "uncertain voxels background (the authors' original scripts)",
    )
    parser.add_argument(
        "--aux-dropout",
        action="store_true",
        help="keep the auxiliary decoder's feature dropout on while predicting, as both "
        "author releases do (docs/method.md)",
    )
    parser.add_argument(
        "--background-margin",
        type=int,
        default=0,
        metavar="N",
        help="leave background seeds within N voxels (in-plane) of a predicted structure "
        "unlabelled (default 0; for seeds that cover the structures much less fully than "
        "the background, docs/results.md section 12.3)",
    )
    parser.add_argument("--split", default="train", help="cases to expand (default train)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--force",
        action="store_true",
        help="compute every seed again, replacing an earlier expansion in OUT",
    )


def _settings(args: argparse.Namespace):
    """The options as ExpandConfig, checked as `dmsps run` checks its expand section."""
    from dmsps.config import ExpandConfig

    cfg = ExpandConfig(
        threshold=args.threshold,
        tta=args.tta,
        target=args.target,
        aux_dropout=args.aux_dropout,
        background_margin=args.background_margin,
    )
    try:
        cfg.check()
    except DmspsError as exc:  # "threshold must be ..." names the option
        name, rest = str(exc).split(" ", 1)
        raise DmspsError(f"--{name.replace('_', '-')} {rest}") from None
    return cfg


def run(args: argparse.Namespace) -> int:
    from dmsps.data.layout import Dataset
    from dmsps.pipeline.expansion import expand_dataset, format_summary

    cfg = _settings(args)
    ds = Dataset(args.dataset)
    if is_within(args.out, ds.root):
        raise DmspsError(f"{args.out}: refusing to write into the dataset folder")
    if not args.force:
        _check_earlier(args)
    summary = expand_dataset(
        args.checkpoint,
        ds,
        ds.split(args.split),
        args.out,
        cfg,
        device=args.device,
        progress=not args.quiet,
        overwrite=args.force,
    )
    print(format_summary(summary))
    return 0


def _check_earlier(args: argparse.Namespace) -> None:
    """Refuse to resume over (and so mix with) an expansion made with other settings."""
    import json

    path = args.out / "expand_summary.json"
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
        old_checkpoint = Path(old["checkpoint"]).resolve()
        before = {n: old[n] if d is None else old.get(n, d) for n, d in RECORDED.items()}
    except (ValueError, KeyError, TypeError):
        raise DmspsError(f"{path}: not an expansion summary; use --force to replace it") from None
    now = {n: getattr(args, n) for n in RECORDED}
    diffs = [f"{n} {before[n]} -> {now[n]}" for n in RECORDED if before[n] != now[n]]
    if old_checkpoint != args.checkpoint.resolve():
        diffs.append(f"checkpoint {old['checkpoint']} -> {args.checkpoint}")
    if diffs:
        raise DmspsError(
            f"{path}: holds an expansion with other settings ({'; '.join(diffs)}); "
            "use --force to replace it"
        )
