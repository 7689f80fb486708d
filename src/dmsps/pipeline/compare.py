"""Compare training methods on one dataset: every method and seed at the same budget.

OUT/
  scribbles/               thinned training scribbles, made once and shared by every run
                           (only with scribbles.length < 1 or scribbles.every_nth_slice > 1),
                           so that all methods of a comparison see the same strokes
  cache/                   preprocessed-case cache shared by every run (patch training)
  runs/<method>-s<seed>/   one run folder each, laid out as `dmsps run` lays out its own:
                           stage1/, predictions/stage1/, metrics/stage1/ (and expand/,
                           stage2/, ... where stage 2 runs), plus compare.json, the
                           settings its stage 1 was made with
  comparison.csv           one row per method and stage: mean ± std over seeds
  comparison.md            the same table as Markdown, with the command line and the date
  comparison.png           mean foreground Dice per method and stage, std error bars

A run whose metrics exist is skipped and an interrupted one resumes, so rerunning the
same command continues where it stopped; adding a method or seeds later trains only the
new runs. A run folder made with other settings is refused, not silently reused.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import shutil
import statistics
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dmsps.config import (
    RunConfig,
    apply_overrides,
    comparable,
    from_dict,
    refuse_other_saved,
    refuse_other_settings,
)
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.io.atomic import atomic_path, write_json, write_text
from dmsps.io.nifti import is_nifti
from dmsps.pipeline.runner import STAGES, eval_split, run_pipeline, thin_out_scribbles
from dmsps.training.methods import METHODS

#: Methods with a second stage (expansion, then training on the expanded seeds).
STAGE2_METHODS = ("dmsps", "dmpls")
#: Settings `compare` chooses itself per run; --set must not change them.
RESERVED = ("stage1.method", "stage2.method", "stage1.seed", "stage2.seed")


@dataclass
class Run:
    """One (method, seed) training: its folder, its settings and the stages it reports."""

    method: str
    seed: int
    folder: Path
    cfg: RunConfig
    stages: tuple[str, ...]

    def summary_path(self, stage: str) -> Path:
        return self.folder / "metrics" / stage / "summary.json"

    def is_finished(self, record: dict) -> bool:
        """Every stage evaluated, with these settings (compare.json equal)."""
        path = self.folder / "compare.json"
        return (
            path.is_file()
            and comparable(_read_record(path)) == comparable(record)
            and all(self.summary_path(s).is_file() for s in self.stages)
        )


def parse_methods(text: str) -> list[str]:
    """``"pce, em,dmsps"`` -> ["pce", "em", "dmsps"], checked against METHODS."""
    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not names:
        raise DmspsError(f"--methods needs at least one method (choose from {', '.join(METHODS)})")
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise DmspsError(
            f"unknown method(s) {', '.join(unknown)} in --methods (choose from "
            f"{', '.join(METHODS)})"
        )
    return names


def check_overrides(overrides: Sequence[str]) -> None:
    """Method and seed come from --methods and --seeds; a --set of them would be lost."""
    for pair in overrides:
        key = pair.split("=", 1)[0].strip().replace("-", "_")
        if key in RESERVED:
            option = "--methods" if key.endswith("method") else "--seeds"
            raise DmspsError(f"--set {key}: compare sets this per run; use {option}")


def plan_runs(
    base: RunConfig, methods: Sequence[str], seeds: int, out: Path, stage2: bool
) -> list[Run]:
    """Seed-major order: an interrupted comparison already holds every method at seed 0."""
    if seeds < 1:
        raise DmspsError(f"--seeds must be at least 1, got {seeds}")
    runs = []
    for seed in range(seeds):
        for method in methods:
            two = stage2 and method in STAGE2_METHODS
            pairs = [f"stage1.method={method}", f"stage1.seed={seed}", f"stage2.seed={seed}"]
            if two:
                pairs.append(f"stage2.method={method}")
            cfg = apply_overrides(base, pairs)
            stages = STAGES if two else STAGES[:1]
            runs.append(Run(method, seed, out / "runs" / f"{method}-s{seed}", cfg, stages))
    return runs


def stage1_record(run: Run, split: str) -> dict:
    """What decides a run's stage-1 result; a rerun with other values is refused."""
    cfg = run.cfg
    return json.loads(
        json.dumps(
            {
                "method": run.method,
                "seed": run.seed,
                "stage1": asdict(cfg.stage1),
                "scribbles": asdict(cfg.scribbles),
                "eval_split": split,
                "checkpoint": cfg.checkpoint,
            }
        )
    )


def _refuse_if_changed(folder: Path, what: str, old: dict, new: dict) -> None:
    refuse_other_settings(
        old,
        new,
        f"{folder}: this {what} was made with different settings",
        "use a new --out folder or the same settings",
    )


def _read_record(path: Path) -> dict:
    """A run's compare.json with its settings sections (stage1, scribbles) read through
    their RunConfig types, so that a setting added since the run was made takes its
    default instead of blocking the reuse of the run. A damaged file is one line naming
    it."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise DmspsError("not a JSON object")
        sections = typing.get_type_hints(RunConfig)
        for key, value in record.items():
            if isinstance(value, dict) and dataclasses.is_dataclass(sections.get(key)):
                record[key] = asdict(from_dict(sections[key], value))
    except (OSError, ValueError, TypeError, DmspsError) as exc:
        raise DmspsError(
            f"{path}: cannot read this run's record ({exc}); delete the run folder to train "
            "it again"
        ) from None
    return record


def check_before_training(ds: Dataset, runs: Sequence[Run], split: str) -> None:
    """Everything that can fail without training: settings, labels, earlier run folders."""
    for run in runs:
        run.cfg.check()
    cfg = runs[0].cfg
    for stage in STAGES:
        if getattr(cfg, stage).stop_at:
            raise DmspsError(
                f"{stage}.stop_at: compare runs every training to its end; interrupt it "
                "(Ctrl-C) and rerun the same command to resume"
            )
    cases = ds.split(split)
    if not cases:
        raise DmspsError(f"{ds.root}: the {split} split has no cases to evaluate")
    unlabelled = [c for c in cases if ds.paths(c).label is None]
    if unlabelled:
        raise DmspsError(
            f"{ds.root}: no label for {split} case(s) {', '.join(unlabelled[:5])}; cannot "
            "evaluate (choose another --split)"
        )
    dense = sorted({r.method for r in runs if METHODS[r.method].needs_labels})
    if dense:
        train = ds.split("train")
        missing = [c for c in train if ds.paths(c).label is None]
        if missing:
            raise DmspsError(
                f"{ds.root}: method(s) {', '.join(dense)} need dense labels, but training "
                f"case(s) {', '.join(missing[:5])} have none in labelsTr/; leave "
                f"{', '.join(dense)} out of --methods"
            )
    for run in runs:
        record = run.folder / "compare.json"
        if record.is_file():
            _refuse_if_changed(run.folder, "run", _read_record(record), stage1_record(run, split))
        pipeline_cfg = run.folder / "config.json"
        if "stage2" in run.stages and pipeline_cfg.is_file():
            refuse_other_saved(
                pipeline_cfg,
                _pipeline_cfg(run),
                f"{run.folder}: this run was made with different settings",
                "use a new --out folder or the same settings",
            )


def _pipeline_cfg(run: Run) -> RunConfig:
    """A run's settings as `run_pipeline` gets (and records in config.json) them: the
    preprocessed-case cache is OUT/cache, one for every run (their preprocessing is the
    same), instead of one per run folder."""
    cfg = copy.deepcopy(run.cfg)
    shared = run.folder.parent.parent / "cache"  # OUT/runs/<run> -> OUT/cache
    cfg.stage1.cache_dir = cfg.stage1.cache_dir or str(shared.resolve())
    return cfg


def _copy_scribbles(shared: Path, target: Path) -> None:
    """The comparison's thinned scribbles into a run folder, where `run_pipeline` finds
    them complete and trains on them instead of drawing other strokes."""
    target.mkdir(parents=True, exist_ok=True)
    for src in sorted(shared.iterdir()):
        dst = target / src.name
        if is_nifti(src) and not src.name.startswith(".") and not dst.is_file():
            with atomic_path(dst, suffix="".join(src.suffixes)) as tmp:
                shutil.copy2(src, tmp)


def _silent(*args, **kwargs) -> None:
    pass


def run_comparison(
    dataset_dir: Path,
    out: Path,
    base: RunConfig,
    methods: Sequence[str],
    seeds: int,
    stage2: bool = False,
    progress: bool = True,
    log: Callable[..., None] = print,
    command: str = "",
) -> dict:
    """Train, predict and evaluate every (method, seed), then write the comparison.

    ``base`` holds the user's settings; each run gets its method and seed on top. Returns
    {"split", "rows", "files"}; ``rows`` as in ``aggregate``.
    """
    ds = Dataset(dataset_dir)
    out = Path(out)
    runs = plan_runs(base, methods, seeds, out, stage2)
    split = eval_split(ds, base)
    check_before_training(ds, runs, split)
    say = log if progress else _silent

    shared_scribbles = None
    if base.scribbles.active:
        shared_scribbles = out / "scribbles"
        settings = shared_scribbles / "settings.json"
        wanted = asdict(base.scribbles)
        if settings.is_file():
            _refuse_if_changed(shared_scribbles, "folder", json.loads(settings.read_text()), wanted)
        shared_scribbles.mkdir(parents=True, exist_ok=True)
        write_json(settings, wanted)
        train = ds.split("train")
        say(thin_out_scribbles(ds, train, shared_scribbles, base.scribbles, progress))

    for i, run in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {run.method} seed {run.seed}"
        record = stage1_record(run, split)
        if run.is_finished(record):
            say(f"{head}: finished earlier, skipped")
            continue
        what = "training stage 1, expansion, stage 2" if "stage2" in run.stages else "training"
        say(f"{head}: {what} ...")
        run.folder.mkdir(parents=True, exist_ok=True)
        write_json(run.folder / "compare.json", record)
        run_scribbles = None
        if shared_scribbles is not None:
            run_scribbles = run.folder / "scribbles"
            _copy_scribbles(shared_scribbles, run_scribbles)
        run_pipeline(ds.root, run.folder, _pipeline_cfg(run), progress, say, run.stages)

    rows = aggregate(runs)
    class_names = [c["name"] for c in rows[0]["classes"]] if rows else []
    files = {
        "csv": out / "comparison.csv",
        "md": out / "comparison.md",
        "png": out / "comparison.png",
    }
    header = _header(ds, base, split, seeds, command, any(r["stage"] == "stage2" for r in rows))
    write_text(files["csv"], table_csv(rows, class_names))
    write_text(files["md"], header + table_markdown(rows, class_names) + _NOTES)
    title = f"{ds.meta.name}: {split} split, mean foreground Dice ± std over seeds"
    bar_plot(rows, files["png"], title)
    return {"split": split, "rows": rows, "files": files, "class_names": class_names}


# --- aggregation ---------------------------------------------------------------------
def _mean_std(values: Sequence[float | None]) -> dict:
    """Mean and sample std (ddof=1, the spread between trainings) over seeds; std is None
    for a single seed. (Evaluation summaries give the population std over cases.)"""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else None,
        "n": len(xs),
    }


def _train_seconds(run: Run, stage: str) -> float:
    """Training time up to and including ``stage`` (stage 2 builds on stage 1)."""
    stages = ("stage1",) if stage == "stage1" else ("stage1", "stage2")
    total = 0.0
    for s in stages:
        final = run.folder / s / "final.json"
        if final.is_file():
            total += float(json.loads(final.read_text()).get("train_seconds", 0.0))
    return total


def aggregate(runs: Sequence[Run]) -> list[dict]:
    """One row per method and stage, in --methods order: statistics over its seeds of
    each run's own summary (foreground mean and per-class Dice, foreground mean HD95)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        for stage in run.stages:
            groups.setdefault((run.method, stage), []).append(run)
    order = list(dict.fromkeys(r.method for r in runs))
    rows = []
    for (method, stage), members in sorted(
        groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])
    ):
        summaries = [json.loads(r.summary_path(stage).read_text()) for r in members]
        names = [c["name"] for c in summaries[0]["classes"]]
        classes = []
        for k, name in enumerate(names):
            per_run = [s["classes"][k]["dice"]["mean"] for s in summaries]
            classes.append({"name": name, "dice": _mean_std(per_run)})
        fg = [s["foreground_mean"] for s in summaries]
        rows.append(
            {
                "method": method,
                "stage": stage,
                "seeds": [r.seed for r in members],
                "cases": summaries[0]["cases"],
                "dice": _mean_std([f["dice"]["mean"] for f in fg]),
                "hd95": _mean_std([f["hd95"]["mean"] for f in fg]),
                "classes": classes,
                "train_minutes": _mean_std([_train_seconds(r, stage) / 60 for r in members]),
            }
        )
    return rows


# --- output --------------------------------------------------------------------------
def _num(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table_csv(rows: Sequence[dict], class_names: Sequence[str]) -> str:
    """Machine-readable table: means and sds over seeds; empty cells where undefined."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["method", "stage", "seeds", "dice_mean", "dice_std"]
    for name in class_names:
        head += [f"dice_{name}_mean", f"dice_{name}_std"]
    w.writerow([*head, "hd95_mean", "hd95_std", "hd95_seeds", "train_minutes_mean"])
    for r in rows:
        cells = [r["method"], r["stage"], len(r["seeds"]), _num(r["dice"]["mean"])]
        cells.append(_num(r["dice"]["std"]))
        by_name = {c["name"]: c["dice"] for c in r["classes"]}
        for name in class_names:
            stats = by_name.get(name, {"mean": None, "std": None})
            cells += [_num(stats["mean"]), _num(stats["std"])]
        cells += [_num(r["hd95"]["mean"]), _num(r["hd95"]["std"]), r["hd95"]["n"]]
        cells.append(_num(r["train_minutes"]["mean"], 2))
        w.writerow(cells)
    return buf.getvalue()


def _cell(stats: dict, digits: int = 3) -> str:
    if stats.get("mean") is None:
        return "n/a"
    if stats.get("std") is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def table_markdown(rows: Sequence[dict], class_names: Sequence[str]) -> str:
    """One row per method and stage; the best mean Dice (and any tie with it) in bold."""
    head = ["method", "stage", "seeds", "mean Dice", *class_names, "HD95 (mm)", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    means = [r["dice"]["mean"] for r in rows if r["dice"].get("mean") is not None]
    best = max(means, default=None)
    for r in rows:
        by_name = {c["name"]: c["dice"] for c in r["classes"]}
        cells = [r["method"], r["stage"].removeprefix("stage"), str(len(r["seeds"]))]
        dice = _cell(r["dice"])
        is_best = best is not None and r["dice"].get("mean") == best
        cells.append(f"**{dice}**" if is_best else dice)
        cells += [_cell(by_name.get(n, {})) for n in class_names]
        hd95 = _cell(r["hd95"], 2)
        if 0 < r["hd95"]["n"] < len(r["seeds"]):  # the other seeds' HD95 was undefined
            hd95 += f" ({r['hd95']['n']} of {len(r['seeds'])} seeds)"
        cells += [hd95, _cell({"mean": r["train_minutes"]["mean"]}, 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _header(
    ds: Dataset, cfg: RunConfig, split: str, seeds: int, command: str, with_stage2: bool
) -> str:
    from datetime import datetime

    s1, s2 = cfg.stage1, cfg.stage2
    budget = (
        f"stage 1: {s1.iterations} iterations, batch {s1.batch_size}, input "
        f"{'x'.join(map(str, s1.patch_size))}"
    )
    if with_stage2:
        budget += f"; stage 2: {s2.iterations} iterations (dmsps and dmpls only)"
    when = datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [f"# Method comparison: {ds.meta.name}", ""]
    if command:
        lines.append(f"Command: `{command}`  ")
    lines += [
        f"Date: {when}",
        "",
        f"Preset `{cfg.preset}`, seeds 0..{seeds - 1}, checkpoint `{cfg.checkpoint}`; "
        f"{budget}. Evaluated on the {split} split ({len(ds.split(split))} cases).",
        "",
    ]
    return "\n".join(lines) + "\n"


_NOTES = """
Each run's scores are means over the evaluated cases (mean Dice: per case over the
foreground classes, then over cases; HD95: the same for the 95th-percentile Hausdorff
distance, cases where it is undefined left out; a run with none defined is left out of
its row's HD95). Each cell is the mean ± sample standard deviation (n - 1) of those
per-run scores over seeds: the spread between trainings, not between cases; a single
seed has no ±. Stage-2 rows' training time includes stage 1's.
"""


# --- bar plot ------------------------------------------------------------------------
_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def bar_plot(rows: Sequence[dict], path: Path, title: str) -> None:
    """Mean foreground Dice per row (0..1 axis) with ±std error bars, as a PNG (Pillow,
    so no plotting library is needed)."""
    from PIL import Image, ImageDraw

    slot, left, right, top, bottom, plot_h = 110, 64, 24, 52, 70, 300
    width = max(560, left + right + slot * max(len(rows), 1))
    height = top + plot_h + bottom
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    small, normal = _font(12), _font(14)
    x0, x1, y0 = left, width - right, top + plot_h

    def y(v: float) -> float:
        return y0 - max(0.0, min(1.0, v)) * plot_h

    draw.text((left, 16), title, fill="black", font=normal)
    for k in range(6):
        v = k / 5
        draw.line([(x0, y(v)), (x1, y(v))], fill="#dddddd" if k else "black")
        label = f"{v:.1f}"
        draw.text((x0 - 8 - draw.textlength(label, font=small), y(v) - 7), label, "black", small)
    draw.line([(x0, top), (x0, y0)], fill="black")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    step = (x1 - x0) / max(len(rows), 1)
    for i, r in enumerate(rows):
        cx = x0 + step * (i + 0.5)
        half = min(step * 0.3, 36)
        colour = _COLOURS[methods.index(r["method"]) % len(_COLOURS)]
        mean, std = r["dice"]["mean"], r["dice"]["std"]
        if mean is not None:
            draw.rectangle([(cx - half, y(mean)), (cx + half, y0)], fill=colour)
            top_value = mean
            if std:
                top_value = mean + std
                draw.line([(cx, y(mean - std)), (cx, y(mean + std))], fill="black", width=2)
                for v in (mean - std, mean + std):
                    draw.line([(cx - 8, y(v)), (cx + 8, y(v))], fill="black", width=2)
            text = f"{mean:.3f}"
            draw.text(
                (cx - draw.textlength(text, font=small) / 2, y(top_value) - 22),
                text,
                "black",
                small,
            )
        for line, name in enumerate(
            [r["method"], f"stage {r['stage'].removeprefix('stage')}", f"n={len(r['seeds'])}"]
        ):
            draw.text(
                (cx - draw.textlength(name, font=small) / 2, y0 + 8 + 16 * line),
                name,
                "black",
                small,
            )
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
