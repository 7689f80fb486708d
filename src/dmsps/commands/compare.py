"""`dmsps compare`: several methods and seeds on one dataset, one table, resumable."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from dmsps.config import add_set_argument
from dmsps.presets import preset_help

NAME = "compare"
HELP = "train and evaluate several methods x seeds at the same budget; one table + plot"
DESCRIPTION = """Compare training methods on one dataset with one command.

Every method in --methods is trained with every seed 0..N-1 (--seeds N) from the same
preset and --set overrides, so all runs have the same budget (iterations, batch, input
size, network); each is predicted and evaluated on the same split. By default every
method trains stage 1 only: the fair same-budget comparison. --stage2 also runs
expansion and stage 2 for the methods that have one (dmsps, dmpls); their stage-2 rows
then cost more training than the others' (the table's training time shows it).

  dmsps compare DATA --methods pce,em,dmpls,dmsps,full --seeds 2 --out cmp
  dmsps compare DATA --methods pce,dmsps --seeds 3 --preset demo --stage2 --out cmp

Writes into --out:
  runs/<method>-s<seed>/   each run, laid out as `dmsps run` lays out its run folder
  comparison.csv           per method and stage: mean ± std over seeds of each run's mean
                           foreground Dice, per-class Dice and HD95; training minutes
  comparison.md            the same table in Markdown, with the command line and the date
  comparison.png           bar plot of mean foreground Dice with std error bars

Rerun the same command after an interruption: finished runs are skipped, an interrupted
one resumes. Adding methods or seeds later trains only the new runs; a run folder made
with other settings is refused. `full` needs dense labels of every training case.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dmsps.training.methods import METHODS

    parser.add_argument("dataset", type=Path, help="dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="comparison folder")
    parser.add_argument(
        "--methods",
        default="pce,dmsps",
        metavar="LIST",
        help=f"comma-separated methods (default pce,dmsps); choose from {', '.join(METHODS)}",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="train each method with seeds 0..N-1 (default 1; 2 or more give a standard deviation)",
    )
    parser.add_argument(
        "--preset", default="acdc", metavar="NAME", help=f"settings to start from; {preset_help()}"
    )
    add_set_argument(
        parser,
        "override a setting for every run (sections: stage1, stage2, expand, scribbles; or "
        "checkpoint); method and seed come from --methods and --seeds",
    )
    parser.add_argument(
        "--stage2",
        action="store_true",
        help="also run expansion + stage 2 for dmsps and dmpls (default: stage 1 only for "
        "every method, the same-budget comparison)",
    )
    parser.add_argument(
        "--split",
        choices=("auto", "val", "test"),
        default=None,
        help="split to evaluate (default auto: test if all its cases have labels, else val)",
    )
    parser.add_argument("--device", default=None, help="auto | cpu | cuda (every run)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines or bars")


def command_line(args: argparse.Namespace, methods: list[str]) -> str:
    """The command that reproduces (or resumes) this comparison, for the Markdown table."""
    argv = ["dmsps", NAME, str(args.dataset), "--methods", ",".join(methods)]
    argv += ["--seeds", str(args.seeds), "--preset", args.preset]
    for pair in args.overrides:
        argv += ["--set", pair]
    if args.stage2:
        argv.append("--stage2")
    if args.split:
        argv += ["--split", args.split]
    if args.device:
        argv += ["--device", args.device]
    return shlex.join([*argv, "--out", str(args.out)])


def run(args: argparse.Namespace) -> int:
    from dmsps.config import apply_overrides
    from dmsps.pipeline.compare import (
        check_overrides,
        parse_methods,
        run_comparison,
        table_markdown,
    )
    from dmsps.presets import PlanContext, preset

    methods = parse_methods(args.methods)
    check_overrides(args.overrides)
    overrides = list(args.overrides)
    if args.device is not None:
        overrides += [f"stage1.device={args.device}", f"stage2.device={args.device}"]
    if args.split is not None:
        overrides.append(f"eval_split={args.split}")
    ctx = PlanContext(args.dataset, args.out, args.device or "auto", not args.quiet)
    cfg = apply_overrides(preset(args.preset, ctx), overrides)
    result = run_comparison(
        args.dataset,
        args.out,
        cfg,
        methods,
        args.seeds,
        stage2=args.stage2,
        progress=not args.quiet,
        command=command_line(args, methods),
    )
    print(f"\n{len(methods)} method(s) x {args.seeds} seed(s) on the {result['split']} split:\n")
    print(table_markdown(result["rows"], result["class_names"]))
    for path in result["files"].values():
        print(path)
    return 0
