"""`dmsps train`: one training stage on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmsps.config import add_train_arguments, apply_overrides, train_overrides
from dmsps.presets import PlanContext, preset_help, stage_settings

NAME = "train"
HELP = "train one stage (stage 1 on scribbles, or stage 2 on expanded seeds)"
DESCRIPTION = """Train the dual-branch U-Net on a dataset in dmsps layout.

The preset gives every setting; any field can be overridden, e.g.
  dmsps train DATA --out runs/s1 --preset acdc --method pce --iterations 2000
Stage 2 (paper: Adam, lr 1e-4) starts from stage-1 weights and trains on seeds:
  dmsps train DATA --out runs/s2 --stage 2 --init-from runs/s1/checkpoints/best.pt \\
      --scribble-dir runs/seeds
The run folder receives config.json, log.csv, checkpoints/{best,last}.pt and final.json.
An interrupted run continues with --resume (same weights as an uninterrupted run on CPU).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="dataset folder (dataset.json, imagesTr, ...)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument(
        "--preset",
        default="acdc",
        metavar="NAME|FILE",
        help=f"settings to start from (default acdc); {preset_help()}; a stage folder's "
        "config.json works too",
    )
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1, help="preset stage")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dmsps.data.layout import Dataset
    from dmsps.training.trainer import Trainer

    # auto and the planned presets plan at the default budget, kept as OUT/plan.json
    ctx = PlanContext(args.dataset, args.out, args.cfg_device or "auto", not args.quiet)
    cfg = apply_overrides(stage_settings(args.preset, args.stage, ctx), train_overrides(args))
    trainer = Trainer(Dataset(args.dataset), cfg, args.out, progress=not args.quiet)
    summary = trainer.fit(resume=args.resume)
    print(
        f"{summary['status']}: {summary['iterations']} iterations, best validation Dice "
        f"{summary['best_val_dice']:.4f} at {summary['best_iteration']}; "
        f"checkpoint {trainer.best_path}"
    )
    return 0
