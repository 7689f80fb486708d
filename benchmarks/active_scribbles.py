"""Does the order of annotation matter? Scribbles revealed by suggestion against at random.

Start from the real scribbles of a random ``--fraction`` (10 %) of the training slices;
in ``--rounds`` rounds (3), reveal the real scribbles of another ``--fraction`` of them,
chosen (a) by the suggestion rule of `dmsps suggest` with the previous round's model
(slices without scribbles yet, by the normalised entropy of both decoders' mean and their
disagreement), (b) at random, or (c) by `dmsps suggest --spread` (the same ranking taken
in turns from five bands of position in the stack, one slice per case; ``--orders``);
retrain from scratch each round at one fixed budget (`dmsps run` with ``--preset`` and
``--iterations``), for each of ``--seeds`` (0 1). Prints validation Dice per round for
every order (stage 2, the pipeline's result, and stage 1) and where in the stacks each
order's slices lie, and writes them to OUT/summary.json and OUT/summary.md.

    python benchmarks/active_scribbles.py DATA --out OUT [--preset acdc] \
        [--iterations 4000] [--stage2-iterations 1000] [--seeds 0 1] [--rounds 3] \
        [--fraction 0.1] [--set stage1.device=cpu ...]

A slice is one (Y, X) plane (index z) of a training case that holds real scribbles in
DATA (ACDC: every slice). The start (round 0) depends on the seed only, so both orders
share it. Everything resumes: rerun the same command after an interruption.

OUT/
  seed<S>/round0/            the shared start
    revealed.json            the revealed slices, [[case, z], ...] (written last)
    data/                    a dataset view: dataset.json, splits.json (train, val),
                             imagesTr and labelsTr linked to DATA's, scribblesTr/ with
                             the revealed slices' real scribbles only
    run/                     the `dmsps run` folder (results.json when done)
  seed<S>/suggest/round<R>/  as round0, plus ranking.json (the candidates' scores)
  seed<S>/random/round<R>/
  seed<S>/spread/round<R>/   as suggest, with the ranking spread over position bands
  summary.json, summary.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from dmsps.annotate import suggestions
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.io.atomic import write_json, write_text
from dmsps.io.nifti import load_volume, read_geometry, save_volume

STRATEGIES = ("suggest", "random", "spread")

Slice = tuple[str, int]


# --- which slices ----------------------------------------------------------------------
def slice_pool(ds: Dataset) -> list[Slice]:
    """Every (case, z) of the training split whose real scribble annotates a voxel."""
    ignore = ds.meta.ignore_value
    pool = []
    for case in sorted(ds.split("train")):
        scribble = ds.load_scribble(case)
        if scribble is None:
            continue
        flags = suggestions.scribbled_slices(scribble, ignore, scribble.shape[0])
        pool += [(case, int(z)) for z in np.flatnonzero(flags)]
    if not pool:
        raise DmspsError(f"{ds.root}: no training slice holds a scribble; nothing to reveal")
    return pool


def batch_size(pool: list[Slice], fraction: float) -> int:
    """Slices revealed per round: ``fraction`` of the pool, at least one."""
    if not 0 < fraction <= 1:
        raise DmspsError(f"--fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * len(pool)))


def reveal_random(
    pool: list[Slice], revealed: list[Slice], k: int, seed: int, round_: int
) -> list[Slice]:
    """``k`` slices of ``pool`` not yet revealed, uniformly at random (depends only on the
    seed and the round, not on anything trained)."""
    left = [s for s in pool if s not in set(revealed)]
    rng = np.random.default_rng([seed, round_, 7])
    picked = rng.choice(len(left), size=min(k, len(left)), replace=False)
    return sorted(left[i] for i in picked)


def reveal_suggested(
    pool: list[Slice],
    revealed: list[Slice],
    k: int,
    scores: dict[str, suggestions.CaseScores],
    spread: bool = False,
) -> tuple[list[Slice], list[dict]]:
    """The ``k`` highest-ranked slices of ``pool`` not yet revealed, by the rule of
    `dmsps suggest` (a revealed slice holds a scribble; slices outside the pool are not
    candidates), or with ``spread`` by `dmsps suggest --spread` (the same ranking, taken
    in turns from five position bands, one slice per case); also the choice, scored."""
    candidates = set(pool) - set(revealed)
    flags = {}
    for case, sc in scores.items():
        flags[case] = np.array([(case, z) not in candidates for z in range(sc.entropy.size)])
    if spread:
        ranking = suggestions.spread(suggestions.rank(scores, flags, "slice"), scores, k)
    else:
        ranking = suggestions.rank(scores, flags, "slice", top=k)
    return sorted((s.case, s.slice) for s in ranking), [s.to_json() for s in ranking]


# --- a round's dataset view and run ------------------------------------------------------
def write_view(ds: Dataset, revealed: list[Slice], out: Path) -> None:
    """A dataset in ``out`` that shows DATA's images and labels (linked) and only the
    revealed slices' scribbles; ``revealed.json`` beside it is the mark of completion."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    ignore = ds.meta.ignore_value
    by_case: dict[str, list[int]] = {}
    for case, z in revealed:
        by_case.setdefault(case, []).append(z)
    for name in ("imagesTr", "labelsTr"):
        link = data / name
        if not link.exists():
            os.symlink((ds.root / name).resolve(), link, target_is_directory=True)
    for case in ds.split("train"):
        source = ds.scribble_path(case)
        if source is None:
            continue
        scribble, geometry = load_volume(source, np.float32)
        keep = np.zeros(scribble.shape[0], bool)
        keep[by_case.get(case, [])] = True
        scribble[~keep] = ignore
        save_volume(data / "scribblesTr" / source.name, scribble, geometry, np.uint8)
    splits = {"train": ds.split("train"), "val": ds.split("val"), "test": []}
    write_json(data / "splits.json", splits)
    write_json(data / "dataset.json", json.loads((ds.root / "dataset.json").read_text()))
    write_json(out / "revealed.json", [list(s) for s in revealed])


def read_revealed(out: Path) -> list[Slice] | None:
    path = out / "revealed.json"
    if not path.is_file():
        return None
    return [(str(c), int(z)) for c, z in json.loads(path.read_text())]


def run_config(args: argparse.Namespace, seed: int):
    """The one budget every round trains with."""
    from dmsps.config import apply_overrides
    from dmsps.presets import preset

    overrides = list(args.overrides)
    for stage in ("stage1", "stage2"):
        overrides.append(f"{stage}.seed={seed}")
        if args.device:
            overrides.append(f"{stage}.device={args.device}")
    if args.iterations:
        overrides.append(f"stage1.iterations={args.iterations}")
    if args.stage2_iterations:
        overrides.append(f"stage2.iterations={args.stage2_iterations}")
    overrides.append("eval_split=val")
    return apply_overrides(preset(args.preset), overrides)


def train_round(out: Path, cfg, progress: bool) -> dict:
    """`dmsps run` on the round's view (resumes); validation Dice of both stages."""
    from dmsps.pipeline.runner import run_pipeline

    results_path = out / "run" / "results.json"
    if results_path.is_file():
        result = json.loads(results_path.read_text())
    else:
        log = print if progress else (lambda *a, **k: None)
        result = run_pipeline(out / "data", out / "run", cfg, progress=progress, log=log)
        if "metrics" not in result:
            raise DmspsError(f"{out / 'run'}: the run stopped early (stop_at); rerun to finish")
    return {
        stage: result["metrics"][stage]["foreground_mean"]["dice"]["mean"]
        for stage in ("stage1", "stage2")
    }


def checkpoint_of(out: Path) -> Path:
    return suggestions.resolve_checkpoint(out / "run")


# --- the experiment ----------------------------------------------------------------------
def run_seed(ds: Dataset, args: argparse.Namespace, seed: int, log=print) -> dict:
    """Every round of both orders for one seed; {strategy: [round dict, ...]}."""
    pool = slice_pool(ds)
    k = batch_size(pool, args.fraction)
    cfg = run_config(args, seed)
    root = args.out / f"seed{seed}"
    start = root / "round0"
    revealed0 = read_revealed(start)
    if revealed0 is None:
        revealed0 = reveal_random(pool, [], k, seed, 0)
        write_view(ds, revealed0, start)
    log(f"seed {seed}: round 0, {len(revealed0)} of {len(pool)} slices")
    dice0 = train_round(start, cfg, args.progress)
    first = {"round": 0, "revealed": len(revealed0), "dice": dice0}
    out = {s: [first] for s in args.orders}
    for strategy in args.orders:
        revealed, previous = list(revealed0), start
        for r in range(1, args.rounds + 1):
            folder = root / strategy / f"round{r}"
            now = read_revealed(folder)
            if now is None:
                if strategy == "random":
                    new = reveal_random(pool, revealed, k, seed, r)
                else:
                    new = suggested(
                        ds, previous, pool, revealed, k, folder, args.device, strategy == "spread"
                    )
                now = sorted(revealed + new)
                write_view(ds, now, folder)
            log(f"seed {seed}: {strategy} round {r}, {len(now)} of {len(pool)} slices")
            dice = train_round(folder, cfg, args.progress)
            out[strategy].append({"round": r, "revealed": len(now), "dice": dice})
            revealed, previous = now, folder
    return out


def suggested(
    ds, previous: Path, pool, revealed, k, folder: Path, device: str | None, spread: bool
):
    """Score the candidate slices with the previous round's model; keep the ranking."""
    ranking_path = folder / "ranking.json"
    if ranking_path.is_file():  # chosen before an interruption: keep the same choice
        chosen = json.loads(ranking_path.read_text())["chosen"]
        return [(str(c), int(z)) for c, z in chosen]
    predictor = suggestions.load_predictor(checkpoint_of(previous), ds, device or "auto")
    cases = sorted({c for c, _ in set(pool) - set(revealed)})
    scores = suggestions.score_cases(predictor, ds, cases)
    chosen, head = reveal_suggested(pool, revealed, k, scores, spread)
    write_json(ranking_path, {"model": str(predictor.path), "chosen": chosen, "ranking": head})
    return chosen


def summarise(per_seed: dict[int, dict], rounds: int, pool_size: int) -> dict:
    table = {}
    for strategy in next(iter(per_seed.values())):
        rows = []
        for r in range(rounds + 1):
            entry = {"round": r, "revealed": None, "dice": {}}
            for stage in ("stage1", "stage2"):
                values = {}
                for seed, res in per_seed.items():
                    row = res[strategy][r]
                    entry["revealed"] = row["revealed"]
                    values[str(seed)] = row["dice"][stage]
                entry["dice"][stage] = {
                    "per_seed": values,
                    "mean": statistics.fmean(values.values()) if values else None,
                }
            rows.append(entry)
        table[strategy] = rows
    return {"pool_slices": pool_size, "rounds": table}


def stack_positions(
    ds: Dataset, root: Path, seeds: list[int], rounds: int, orders: tuple[str, ...] = STRATEGIES
) -> dict:
    """Where in its stack each order's added slices lie, over all seeds and rounds: the
    relative position z / (depth - 1) (0 the file's first slice, 1 its last); an order
    that keeps to one end of the stacks shows the model's doubt there, and trains on
    fewer kinds of slice."""
    depth = {}
    for case in ds.split("train"):
        path = ds.scribble_path(case)
        if path is not None:
            depth[case] = read_geometry(path).shape[0]
    out = {}
    for strategy in orders:
        rel = []
        for seed in seeds:
            before = set(read_revealed(root / f"seed{seed}" / "round0") or [])
            for r in range(1, rounds + 1):
                now = set(read_revealed(root / f"seed{seed}" / strategy / f"round{r}") or [])
                rel += [z / max(depth[c] - 1, 1) for c, z in now - before]
                before = now
        values = np.asarray(rel, float)
        out[strategy] = {
            "slices": int(values.size),
            "median": float(np.median(values)) if values.size else None,
            "first_fifth": float(np.mean(values <= 0.2)) if values.size else None,
            "last_fifth": float(np.mean(values >= 0.8)) if values.size else None,
        }
    return out


def positions_text(positions: dict) -> str:
    parts = [
        f"{name}: median {p['median']:.2f}, {p['first_fifth']:.0%} in the first fifth, "
        f"{p['last_fifth']:.0%} in the last"
        for name, p in positions.items()
        if p["slices"]
    ]
    return (
        "Where the added slices lie in their stack (z / (depth - 1), all seeds and rounds): "
        + "; ".join(parts)
        + "."
    )


def markdown(summary: dict, seeds: list[int], stage: str) -> str:
    """One row per round: each order's Dice per seed and mean, then each order's mean
    minus random's."""
    orders = list(summary["rounds"])
    against = [o for o in orders if o != "random"] if "random" in orders else []
    seed_cols = " | ".join(f"seed {s}" for s in seeds)
    head = "| round | slices with scribbles | "
    head += " | ".join(f"{o}: {seed_cols} | mean" for o in orders)
    head += "".join(f" | {o} - random" for o in against) + " |"
    lines = [head, "|" + "---|" * (2 + len(orders) * (len(seeds) + 1) + len(against))]
    pool = summary["pool_slices"]
    for r in range(len(summary["rounds"][orders[0]])):
        rows = {o: summary["rounds"][o][r] for o in orders}
        revealed = rows[orders[0]]["revealed"]
        cells = [str(r), f"{revealed} of {pool} ({revealed / pool:.0%})"]
        for o in orders:
            d = rows[o]["dice"][stage]
            cells += [f"{d['per_seed'][str(s)]:.4f}" for s in seeds] + [f"**{d['mean']:.4f}**"]
        for o in against:
            diff = rows[o]["dice"][stage]["mean"] - rows["random"]["dice"][stage]["mean"]
            cells.append(f"{diff:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="dataset with real scribbles (dmsps layout)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", default="acdc")
    parser.add_argument("--iterations", type=int, default=None, help="stage-1 iterations")
    parser.add_argument("--stage2-iterations", type=int, default=None, help="stage-2 iterations")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument(
        "--orders", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
        help="the orders to compare: suggest (dmsps suggest's ranking), random, spread "
        "(dmsps suggest --spread: the ranking spread over position bands and cases)",
    )  # fmt: skip
    parser.add_argument("--device", default=None, help="auto | cpu | cuda")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="any `dmsps run --set` setting (repeatable)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    args.progress = not args.quiet
    args.orders = tuple(o for o in STRATEGIES if o in args.orders)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        ds = Dataset(args.dataset)
        if not ds.split("val"):
            raise DmspsError(f"{ds.root}: no validation cases in splits.json to score rounds on")
        pool = slice_pool(ds)
        if batch_size(pool, args.fraction) * (args.rounds + 1) > len(pool):
            raise DmspsError(
                f"{len(pool)} slices cannot give {args.rounds + 1} batches of "
                f"{batch_size(pool, args.fraction)}; lower --fraction or --rounds"
            )
        args.out.mkdir(parents=True, exist_ok=True)
        per_seed = {seed: run_seed(ds, args, seed) for seed in args.seeds}
    except DmspsError as exc:
        print(f"active_scribbles: error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(per_seed, args.rounds, len(pool))
    summary["settings"] = {
        "dataset": str(ds.root),
        "preset": args.preset,
        "iterations": args.iterations,
        "stage2_iterations": args.stage2_iterations,
        "seeds": args.seeds,
        "rounds": args.rounds,
        "fraction": args.fraction,
        "overrides": args.overrides,
    }
    summary["positions"] = stack_positions(ds, args.out, args.seeds, args.rounds, args.orders)
    write_json(args.out / "summary.json", summary)
    text = (
        "Validation Dice (foreground mean), stage 2:\n\n"
        + markdown(summary, args.seeds, "stage2")
        + "\n\nStage 1:\n\n"
        + markdown(summary, args.seeds, "stage1")
        + "\n\n"
        + positions_text(summary["positions"])
        + "\n"
    )
    write_text(args.out / "summary.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
