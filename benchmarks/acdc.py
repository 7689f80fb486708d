"""Real-data experiment: pCE vs DMSPS (stage 1 and 2) vs full supervision on ACDC.

Imports the ACDC HDF5 volumes of the WSL4MIS/DMSPS release (ACDC_H5_DIR: volumes/*.h5 with
train.txt and val.txt; 140 train / 30 validation, real scribbles), trains
every method with the same preset (same iterations, input size, batch), evaluates each
on the 30 validation volumes and writes ``results.json`` and ``results.md``.

    python benchmarks/acdc.py --source ACDC_H5_DIR --work bench-out/acdc
    python benchmarks/acdc.py --paper ...          # the paper's 256x256 / 30k+20k setting

Reported checkpoints are the *last* weights (``--checkpoint last``): the validation
split is also where we report, so choosing the best-on-validation checkpoint would flatter
every method. Validation Dice is still logged during training for the time-to-quality
figures (first iteration / minute at which stage 1 reaches 0.80 and 0.85).

Every experiment is a plain ``dmsps`` command line, so what this script measures is
what users run. ``--parallel N`` runs N experiments at once (useful on a GPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

DMSPS = [sys.executable, "-m", "dmsps.cli"]


def _sh(cmd: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        return subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)


def experiments(methods: list[str], seeds: list[int], stage2_seeds: list[int]) -> list[dict]:
    out = []
    for method in methods:
        for seed in seeds if method in ("pce", "dmsps") else seeds[:1]:
            out.append(
                {
                    "method": method,
                    "seed": seed,
                    "with_stage2": method == "dmsps" and seed in stage2_seeds,
                }
            )
    return out


def run_one(exp: dict, args: argparse.Namespace) -> dict:
    name = f"{exp['method']}-s{exp['seed']}"
    run = args.work / "runs" / name
    log = run / "commands.log"
    data = str(args.dataset)
    common = ["--device", args.device, "--quiet"]
    t0 = time.perf_counter()
    sets = [f"--set={s}" for s in args.set]
    if exp["method"] == "dmsps" and exp["with_stage2"]:
        rc = _sh(
            [
                *DMSPS,
                "run",
                data,
                "--out",
                str(run),
                "--preset",
                args.preset,
                "--seed",
                str(exp["seed"]),
                "--set",
                f"checkpoint={args.checkpoint}",
                *sets,
                *common,
            ],
            log,
        )
        stages = ["stage1", "stage2"]
    else:
        rc = _train_eval(
            run,
            "stage1",
            ["--method", exp["method"], *_as_options(args.set, "stage1.")],
            exp,
            args,
        )
        stages = ["stage1"]
    if rc == 0 and exp["with_stage2"] and args.stage2_variant:
        # Further stage-2 trainings from the same stage-1 weights and expanded seeds, at
        # once (each is small), so a stage-2 setting is compared on equal footing.
        seeds_dir = run / "expand" / "seeds"
        s1 = run / "stage1" / "checkpoints" / f"{args.checkpoint}.pt"
        jobs = {}
        with ThreadPoolExecutor(max_workers=len(args.stage2_variant)) as pool:
            for vname, opts in args.stage2_variant:
                extra = ["--stage", "2", "--init-from", str(s1), "--scribble-dir", str(seeds_dir)]
                extra += _as_options(args.set, "stage2.") + opts
                jobs[vname] = pool.submit(_train_eval, run, f"stage2-{vname}", extra, exp, args)
        rc = max(f.result() for f in jobs.values())
        stages += [f"stage2-{v}" for v in jobs]
    result = {**exp, "name": name, "returncode": rc, "wall_s": time.perf_counter() - t0}
    for stage in stages:
        summ = run / "metrics" / stage / "summary.json"
        final = run / stage / "final.json"
        result[stage] = {
            "metrics": json.loads(summ.read_text()) if summ.is_file() else None,
            "train": json.loads(final.read_text()) if final.is_file() else None,
            "curve": _curve(run / stage / "log.csv"),
        }
    expand = run / "expand" / "seeds" / "expand_summary.json"
    if expand.is_file():
        result["expand"] = json.loads(expand.read_text())
    return result


def _option(key: str, value: str) -> list[str]:
    """A setting as ``dmsps train`` options: ``batch_size``, ``24`` -> ``--batch-size 24``."""
    return ["--" + key.strip().replace("_", "-"), value.strip()]


def _as_options(sets: list[str], prefix: str) -> list[str]:
    """``stage1.batch_size=24`` -> ``--batch-size 24`` for the settings of one stage."""
    out = []
    for s in sets:
        if s.startswith(prefix):
            out += _option(*s.removeprefix(prefix).split("=", 1))
    return out


def _train_eval(run: Path, stage: str, extra: list[str], exp: dict, args) -> int:
    """``dmsps train`` into RUN/STAGE, then predict and evaluate the validation split."""
    log = run / "commands.log"
    data = str(args.dataset)
    common = ["--device", args.device, "--quiet"]
    rc = _sh(
        [
            *DMSPS,
            "train",
            data,
            "--out",
            str(run / stage),
            "--preset",
            args.preset,
            "--seed",
            str(exp["seed"]),
            "--resume",
            *extra,
            *common,
        ],
        log,
    )
    ck = run / stage / "checkpoints" / f"{args.checkpoint}.pt"
    pred = run / "predictions" / stage
    rc = rc or _sh([*DMSPS, "predict", str(ck), data, str(pred), "--split", "val", *common], log)
    return rc or _sh(
        [*DMSPS, "evaluate", str(pred), data, "--out", str(run / "metrics" / stage)], log
    )


def _variant(text: str) -> tuple[str, list[str]]:
    """``NAME:key=value,key=value`` -> (NAME, ["--key", "value", ...])."""
    name, _, body = text.partition(":")
    if not name or not body or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME:key=value[,key=value], got '{text}'")
    opts = []
    for item in body.split(","):
        k, eq, v = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"'{item}' in '{text}' is not key=value")
        opts += _option(k, v)
    return name, opts


def _curve(log: Path) -> list[tuple[int, float, float]]:
    """(iteration, elapsed seconds, validation Dice) rows of a training log."""
    if not log.is_file():
        return []
    with open(log, newline="") as fh:
        return [
            (int(r["iteration"]), float(r["elapsed_s"]), float(r["val_dice"]))
            for r in csv.DictReader(fh)
            if r.get("val_dice")
        ]


def first_reaching(curve: list, threshold: float) -> tuple[int, float] | None:
    for it, sec, dice in curve:
        if dice >= threshold:
            return it, sec
    return None


def _fmt(stats: dict | None, digits: int = 3) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    return f"{stats['mean']:.{digits}f}"


def _spread(results: list[dict]) -> list[str]:
    """Per method and stage: mean, standard deviation and range of mean Dice over seeds."""
    groups: dict[str, list[float]] = {}
    for r in results:
        for stage in [k for k in r if k.startswith("stage")]:
            m = r[stage]["metrics"]
            if m and m["foreground_mean"]["dice"].get("mean") is not None:
                key = r["method"] if r["method"] != "dmsps" else f"dmsps {stage}"
                groups.setdefault(key, []).append(m["foreground_mean"]["dice"]["mean"])
    lines = [
        "| method | seeds | mean Dice over seeds | sd | min | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, xs in groups.items():
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        lines.append(
            f"| {key} | {len(xs)} | {statistics.fmean(xs):.3f} | {sd:.3f} | "
            f"{min(xs):.3f} | {max(xs):.3f} |"
        )
    return lines


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"Preset `{args.preset}`, checkpoint `{args.checkpoint}`, device `{args.device}`; "
        "Dice on the 30 ACDC validation volumes; HD95 in mm assuming 1.5 x 1.5 x 10 mm voxels.",
        f"Overrides: {' '.join(args.set) or 'none'}.",
        "",
        "| method | seed | RV | Myo | LV | mean Dice | mean HD95 (mm) | train min | iterations |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        for stage in [k for k in r if k.startswith("stage")]:
            if not r[stage]["metrics"]:
                continue
            m, t = r[stage]["metrics"], r[stage]["train"] or {}
            fg = m["foreground_mean"]
            per = {c["name"]: c for c in m["classes"]}
            label = r["method"]
            if r["method"] == "dmsps":
                num, _, variant = stage.removeprefix("stage").partition("-")
                label = f"dmsps stage {num}" + (f" [{variant}]" if variant else "")
            lines.append(
                f"| {label} | {r['seed']} | {_fmt(per.get('RV', {}).get('dice'))} | "
                f"{_fmt(per.get('Myo', {}).get('dice'))} | {_fmt(per.get('LV', {}).get('dice'))} | "
                f"**{_fmt(fg['dice'])}** | {_fmt(fg['hd95'], 2)} | "
                f"{t.get('train_seconds', 0) / 60:.1f} | {t.get('iterations', '?')} |"
            )
    lines += ["", *_spread(results), ""]
    for r in results:
        if r["method"] == "dmsps":
            for thr in (0.80, 0.85):
                hit = first_reaching(r["stage1"]["curve"], thr)
                where = (
                    "not reached" if hit is None else f"iteration {hit[0]} ({hit[1] / 60:.1f} min)"
                )
                lines.append(
                    f"- dmsps stage 1 seed {r['seed']}: validation Dice {thr:.2f} at {where}"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--source",
        type=Path,
        required=True,
        help="ACDC HDF5 folder (volumes/*.h5, train.txt, val.txt; the WSL4MIS/DMSPS release)",
    )
    p.add_argument("--work", type=Path, default=Path("bench-out/acdc"), help="output folder")
    p.add_argument(
        "--dataset",
        type=Path,
        help="an already imported dataset to use (default: import into WORK/dataset)",
    )
    p.add_argument(
        "--preset", default="acdc", help="acdc (CPU budget), acdc-paper (GPU) or acdc-3d"
    )
    p.add_argument(
        "--paper", action="store_true", help="the paper's setting (= --preset acdc-paper)"
    )
    p.add_argument("--methods", nargs="+", default=["pce", "dmsps", "full"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument(
        "--stage2-seeds",
        nargs="*",
        type=int,
        default=[0, 1],
        help="dmsps seeds that also run expansion + stage 2 (none: stage 1 only)",
    )
    p.add_argument(
        "--stage2-variant",
        action="append",
        type=_variant,
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="also train stage 2 with these settings from the same stage-1 weights and "
        "seeds, e.g. sgd:optimizer=sgd,lr=0.01,weight_decay=0.0001 (repeatable)",
    )
    p.add_argument("--checkpoint", default="last", choices=("last", "best"))
    p.add_argument("--device", default="auto")
    p.add_argument("--parallel", type=int, default=1, help="experiments at once")
    p.add_argument(
        "--set", action="append", default=[], help="extra run override, e.g. stage1.iterations=100"
    )
    args = p.parse_args()
    if args.paper:
        args.preset = "acdc-paper"
    args.work.mkdir(parents=True, exist_ok=True)
    args.dataset = dataset = args.dataset or args.work / "dataset"
    if not (dataset / "dataset.json").is_file():
        rc = _sh(
            [*DMSPS, "import", "acdc-h5", str(args.source), str(dataset), "--overwrite"],
            args.work / "import.log",
        )
        if rc:
            sys.exit(f"import failed; see {args.work / 'import.log'}")
    exps = experiments(args.methods, args.seeds, args.stage2_seeds)
    print(f"{len(exps)} experiments, {args.parallel} at a time; logs under {args.work / 'runs'}")
    t0 = time.perf_counter()
    results: list[dict] = []

    def save() -> dict:
        summary = {
            "preset": args.preset,
            "checkpoint": args.checkpoint,
            "device": args.device,
            "cpu_count": os.cpu_count(),
            "wall_s": time.perf_counter() - t0,
            "results": sorted(results, key=lambda r: (r["method"], r["seed"])),
        }
        (args.work / "results.json").write_text(json.dumps(summary, indent=1))
        return summary

    # Results are saved as each experiment ends, so a run cut short keeps what finished.
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(run_one, e, args) for e in exps]
        for fut in as_completed(futures):
            results.append(fut.result())
            save()
    results = save()["results"]
    md = markdown(results, args)
    (args.work / "results.md").write_text(md)
    print(md)
    if any(r["returncode"] for r in results):
        sys.exit("some experiments failed; see their commands.log")


if __name__ == "__main__":
    main()
