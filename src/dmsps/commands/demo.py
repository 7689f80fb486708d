"""`dmsps demo`: the whole pipeline on synthetic data, in minutes on a CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dmsps.config import add_set_argument

NAME = "demo"
HELP = "synthetic data -> import -> stage 1 -> expansion -> stage 2 -> evaluation, in minutes"
DESCRIPTION = """Show the whole workflow with no data and no GPU.

--task cardiac (default, 2D): a synthetic short-axis cardiac dataset (RV, myocardium,
  LV with simulated scribbles), run with the `demo` preset; about 4 minutes.
--task abdomen (3D): synthetic abdominal CT in the WORD release layout, imported with
  `dmsps import word` (the paper's seven organs, body crop, scribbles simulated slice by
  slice), run with the `demo-abdomen` preset.
--task brain (3D): synthetic four-sequence brain-tumour MRI in the BraTS 2020 layout,
  imported with `dmsps import brats2020` (tumour core, edema; our scribble simulator,
  with which the preset was tuned, rather than the importer's default authors' style),
  `demo-brain` preset.

Each prints per-class Dice and HD95 of stage 1 and stage 2 on the synthetic test cases.
Everything lands in --out (default ./dmsps-demo, or ./dmsps-demo-TASK); rerunning
resumes. Open OUT/run/report/index.html afterwards.
"""

TASKS = ("cardiac", "abdomen", "brain")

#: Contrast phase of the abdominal demo's synthetic CT (docs/3d.md: what it reaches).
DEMO_PHASE = "venous"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, default="cardiac", help="which demo to run")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default dmsps-demo[-TASK])"
    )
    parser.add_argument("--cases", type=int, default=None, help="synthetic volumes to make")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--phase",
        choices=("venous", "unenhanced"),
        default=DEMO_PHASE,
        help="abdomen only: contrast phase of the synthetic CT (venous, the default: "
        "portal-venous contrast, as most abdominal CT; unenhanced: organs differ by a few "
        "HU; see docs/3d.md)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_set_argument(parser, "override a demo setting, e.g. --set stage1.iterations=200")
    parser.add_argument("--quiet", action="store_true")


def comparison_table(metrics: dict) -> str:
    """Per-class Dice and HD95 of both stages side by side."""
    s1, s2 = metrics["stage1"], metrics["stage2"]
    rows = [("class", "Dice stage 1", "Dice stage 2", "HD95 stage 1", "HD95 stage 2")]

    def fmt(stats: dict | None, digits: int, unit: str = "") -> str:
        if not stats or stats.get("mean") is None:
            return "n/a"  # e.g. HD95 of a class no test case predicted
        return f"{stats['mean']:.{digits}f}{unit}"

    for c1, c2 in zip(s1["classes"], s2["classes"], strict=True):
        rows.append(
            (
                c1["name"],
                fmt(c1["dice"], 3),
                fmt(c2["dice"], 3),
                fmt(c1["hd95"], 2, " mm"),
                fmt(c2["hd95"], 2, " mm"),
            )
        )
    f1, f2 = s1["foreground_mean"], s2["foreground_mean"]
    rows.append(
        (
            "mean",
            fmt(f1["dice"], 3),
            fmt(f2["dice"], 3),
            fmt(f1["hd95"], 2, " mm"),
            fmt(f2["hd95"], 2, " mm"),
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _prepare(
    task: str, out: Path, cases: int | None, seed: int, quiet: bool, phase: str = DEMO_PHASE
) -> Path:
    """Make the task's synthetic data (and import it, for the 3D sources); returns the
    dataset folder. Steps already done are skipped."""
    data = out / "data"
    if (data / "dataset.json").is_file():
        return data
    if task == "cardiac":
        from dmsps.data.synthetic.cardiac import make_cardiac_dataset

        n = cases or 40
        print(f"== making {n} synthetic cardiac volumes in {data}")
        make_cardiac_dataset(data, cases=n, seed=seed, progress=not quiet, overwrite=True)
        return data
    from dmsps.data.importers import get_importer

    source = out / "source"
    n = cases or 30
    if task == "abdomen":
        from dmsps.data.synthetic.abdomen import make_abdomen_source as make
    else:
        from dmsps.data.synthetic.brain import make_brain_source as make
    print(f"== making {n} synthetic {task} volumes in {source} (official source layout)")
    extra = {"phase": phase} if task == "abdomen" else {}
    make(source, cases=n, seed=seed, progress=not quiet, overwrite=True, **extra)
    name = "word" if task == "abdomen" else "brats2020"
    print(f"== dmsps import {name} {source} {data}")
    parser = argparse.ArgumentParser()
    importer = get_importer(name)
    importer.add_arguments(parser)
    # Our scribble style, which the demo presets and their figures (docs/3d.md) were
    # made with; brats2020 would otherwise draw the authors' style.
    args = parser.parse_args(
        [str(source), str(data), "--overwrite", "--seed", str(seed), "--scribble-style", "dmsps"]
    )
    result = importer.run(args)
    print(result.summary())
    return data


def run(args: argparse.Namespace) -> int:
    from dmsps.config import apply_overrides
    from dmsps.errors import DmspsError
    from dmsps.pipeline.runner import run_pipeline
    from dmsps.presets import preset

    if args.cases is not None and args.cases < 5:
        raise DmspsError(f"--cases must be at least 5 (train, val and test), got {args.cases}")
    out = args.out or Path("dmsps-demo" if args.task == "cardiac" else f"dmsps-demo-{args.task}")
    name = "demo" if args.task == "cardiac" else f"demo-{args.task}"
    overrides = [f"stage1.device={args.device}", f"stage2.device={args.device}", *args.overrides]
    cfg = apply_overrides(preset(name), overrides)  # a bad --set fails before any work
    t0 = time.perf_counter()
    data = _prepare(args.task, out, args.cases, args.seed, args.quiet, args.phase)
    result = run_pipeline(data, out / "run", cfg, progress=not args.quiet)
    minutes = (time.perf_counter() - t0) / 60
    if "stopped" in result:  # --set stageN.stop_at: the runner said where it stopped
        return 0
    n = result["metrics"]["stage2"]["cases"]
    print(
        f"\nDMSPS demo ({args.task}): {n} synthetic {result['split']} volumes, "
        f"{minutes:.1f} min in total\n"
    )
    print(comparison_table(result["metrics"]))
    print(f"\nreport: {out / 'run' / 'report' / 'index.html'}")
    return 0
