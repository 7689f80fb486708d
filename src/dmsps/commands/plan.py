"""`dmsps plan`: settings for a dataset, from its fingerprint and a budget."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "plan"
HELP = "plan a run's settings from the dataset (spacing, patch, kernels, iterations)"
DESCRIPTION = """Read a fingerprint of the dataset (spacings, shapes, per-channel intensity
statistics, class volumes, scribble density) and write settings for it in the schema of a
run's config.json: 2D or 3D, target spacing, patch size, per-level kernels and pooling
strides (1x3x3 and 1x2x2 where slices are still more than twice as thick as the
in-plane spacing), batch size, normalisation, and iterations that fit the budget, from
a step time measured here with the planned network. The rules are in docs/3d.md.

  dmsps plan data/acdc --dims 3 --out plan.json
  dmsps run data/acdc --preset plan.json --out runs/acdc3d
  dmsps run data/acdc --preset auto --dims 3 --out runs/acdc3d   # plan and run in one go

Budgets: cpu-1h (about an hour of training on this machine's CPU), gpu-1h (the same on
a GPU), paper (the paper's iterations). The fingerprint is written beside the plan.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmsps.planning.planner import BUDGETS

    parser.add_argument("dataset", type=Path, help="dataset folder")
    parser.add_argument(
        "--out", type=Path, default=Path("plan.json"), help="settings file (default plan.json)"
    )
    add_plan_arguments(parser, BUDGETS)
    parser.add_argument(
        "--device", default="auto", help="where to time the step: auto | cpu | cuda"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def add_plan_arguments(parser: argparse.ArgumentParser, budgets) -> None:
    """--budget and --dims, shared with `dmsps run --preset auto`."""
    parser.add_argument(
        "--budget",
        default="cpu-1h",
        metavar="BUDGET",
        help="; ".join(f"{b.name}: {b.help}" for b in budgets.values())
        + "; or cpu-<N>m, gpu-<N>h ... for another time (default cpu-1h)",
    )
    parser.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        default=None,
        help="2 (slices) or 3 (volumes); default: 2 for short stacks of thick slices, else 3",
    )


def run(args: argparse.Namespace) -> int:
    from dmsps.io.atomic import write_json
    from dmsps.planning.workflow import describe, plan_dataset

    cfg, fingerprint = plan_dataset(
        args.dataset, args.budget, args.dims, args.device, progress=not args.quiet
    )
    write_json(args.out, cfg.to_dict())
    fp_path = args.out.with_name(args.out.stem + ".fingerprint.json")
    write_json(fp_path, fingerprint.to_dict())
    print(describe(cfg, fingerprint))
    print(
        f"wrote {args.out} (fingerprint: {fp_path}); run it with: dmsps run {args.dataset} "
        f"--preset {args.out} --out RUN"
    )
    return 0
