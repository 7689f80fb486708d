"""`dmsps run`: the whole two-stage pipeline, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmsps.commands.plan import add_plan_arguments
from dmsps.config import add_set_argument
from dmsps.planning.planner import BUDGETS
from dmsps.presets import preset_help

NAME = "run"
HELP = "stage 1 -> expand -> stage 2 -> predict -> evaluate -> report, resumable"
DESCRIPTION = """Run the DMSPS paper's pipeline on a dataset into one run folder.

Each step is skipped when its artefacts are complete; rerun the same command after an
interruption to continue. The preset gives every setting (2D or 3D, network, budget; see
--preset); override any of them with --set, e.g.
  --set stage1.iterations=5000 --set expand.threshold=0.05 --set expand.target=dense
  --set stage1.pl_loss=soft-ce --set scribbles.length=0.25

Several GPUs (or CPU processes): torchrun --nproc_per_node N -m dmsps.cli run ... splits
each batch over the processes; rank 0 writes every file (README, "GPU and several GPUs").
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, help="dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--preset",
        default="acdc",
        metavar="NAME|FILE",
        help=f"settings to start from; {preset_help()} (`dmsps plan`; --budget, --dims); "
        "a plan is saved as OUT/plan.json and kept when the run resumes",
    )
    add_set_argument(
        parser,
        "override a setting (sections: stage1, stage2, expand, scribbles; or eval_split, "
        "checkpoint, largest_component)",
    )
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (both stages)")
    parser.add_argument("--seed", type=int, default=None, help="seed for both stages")
    parser.add_argument("--quiet", action="store_true")
    plan = parser.add_argument_group("with --preset auto")
    add_plan_arguments(plan, BUDGETS)


def _settings(args: argparse.Namespace):
    """The --preset value's settings; ``auto`` and the planned presets plan them, once
    per run folder."""
    from dmsps.presets import PlanContext, preset

    device = args.device or "auto"
    ctx = PlanContext(args.dataset, args.out, device, not args.quiet, args.budget, args.dims)
    return preset(args.preset, ctx)


def run(args: argparse.Namespace) -> int:
    from dmsps.config import apply_overrides
    from dmsps.eval.evaluation import format_table
    from dmsps.pipeline.runner import run_pipeline

    overrides = list(args.overrides)
    for key, value in (("device", args.device), ("seed", args.seed)):
        if value is not None:
            overrides += [f"stage1.{key}={value}", f"stage2.{key}={value}"]
    cfg = apply_overrides(_settings(args), overrides)
    result = run_pipeline(args.dataset, args.out, cfg, progress=not args.quiet)
    if "metrics" not in result:  # stopped at stop_at, or another rank under torchrun
        return 0
    for stage in ("stage1", "stage2"):
        print(f"\n{stage} on the {result['split']} split:")
        print(format_table(result["metrics"][stage]))
    print(f"\nreport: {args.out / 'report' / 'index.html'}")
    return 0
