"""The paper's full pipeline in one run folder, every step resumable.

RUN/
  config.json                 the resolved RunConfig
  scribbles/                  sparser training scribbles (only with scribbles.length < 1
                              or scribbles.every_nth_slice > 1)
  stage1/                     checkpoints/{best,last}.pt, log.csv, final.json
  expand/seeds/               expanded seeds (scribble layout) + expand_summary.json
  stage2/                     as stage1, trained on the seeds from stage-1 best weights
  predictions/stage{1,2}/     label maps of the evaluation split (+ uncertainty/)
  metrics/stage{1,2}/         metrics.csv, summary.csv, summary.json (+ *_medpy: the
                              authors' metric convention)
  report/index.html           visual report

A step is skipped when its artefacts are complete, so rerunning the same command after
an interruption continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

from dmsps.config import RunConfig, ScribbleConfig, from_dict, refuse_other_settings
from dmsps.data.layout import Dataset
from dmsps.device import resolve_device
from dmsps.errors import DmspsError
from dmsps.io.atomic import remove_temporaries, write_json
from dmsps.training import distributed


def eval_split(ds: Dataset, cfg: RunConfig) -> str:
    if cfg.eval_split != "auto":
        return cfg.eval_split
    test = ds.split("test")
    if test and all(ds.paths(c).label is not None for c in test):
        return "test"
    return "val"


def _check_config(out: Path, cfg: RunConfig) -> None:
    path = out / "config.json"
    if path.is_file():
        # Read through from_dict so that a setting added since the folder was made takes
        # its default instead of blocking the resume of an older run.
        old = from_dict(RunConfig, json.loads(path.read_text()))
        # Device, threads, logging and stop_at may change between pieces of one run.
        refuse_other_settings(
            asdict(old),
            asdict(cfg),
            f"{out}: this run folder was made with different settings",
            "use a new --out folder or the same settings to resume",
        )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(path, asdict(cfg))


def _silent(*args, **kwargs) -> None:
    pass


def thin_out_scribbles(
    ds: Dataset, cases: list[str], out_dir: Path, cfg: ScribbleConfig, progress: bool
) -> str:
    """Shorter strokes / fewer slices for ``cases`` into ``out_dir`` (resumes per file);
    returns a one-line account of what was kept."""
    import numpy as np
    from tqdm import tqdm

    from dmsps.data.labels import check_scribble
    from dmsps.data.simulation import keep_every_nth_slice, shorten_scribble
    from dmsps.io.nifti import load_volume, save_volume

    ignore = ds.meta.ignore_value
    out_dir.mkdir(parents=True, exist_ok=True)
    before = after = 0
    for case in tqdm(cases, desc="thin out scribbles", disable=not progress):
        source = ds.scribble_path(case)
        if source is None:
            continue
        scribble, geometry = load_volume(source, np.float32)
        scribble = check_scribble(scribble, ds.meta.num_classes, ignore, source)
        target = out_dir / f"{case}{ds.meta.file_ending}"
        if target.is_file():  # resume: written atomically by an earlier, interrupted run
            thinner = ds.load_scribble(case, out_dir)
        else:
            remove_temporaries(target)  # of a killed run
            thinner = shorten_scribble(scribble, cfg.length, ignore)
            thinner = keep_every_nth_slice(
                thinner, cfg.every_nth_slice, ignore, annotated_only=True
            )
            save_volume(target, thinner, geometry, np.uint8)
        before += int((scribble != ignore).sum())
        after += int((thinner != ignore).sum())
    share = after / before if before else 0.0
    return (
        f"kept {after} of {before} annotated voxels ({share:.1%}): strokes at "
        f"{cfg.length:g} of their length, every {cfg.every_nth_slice} annotated slice(s)"
    )


def _stopped(stage: str, summary: dict, split: str, log) -> dict:
    log(
        f"== {stage} stopped at iteration {summary['iterations']} (stop_at); run the same "
        "command without stop_at to continue"
    )
    return {"split": split, "stopped": stage, "train": {stage: summary}}


def run_pipeline(
    dataset_dir: Path, out: Path, cfg: RunConfig, progress: bool = True, log=print
) -> dict:
    """Stage 1 -> expand -> stage 2 -> predict -> evaluate -> report."""
    from dmsps.eval.evaluation import evaluate_folders
    from dmsps.inference.predictor import predict_folder
    from dmsps.pipeline.expansion import expand_dataset, format_summary
    from dmsps.pipeline.report import write_report
    from dmsps.training.trainer import Trainer, validate_config

    ds = Dataset(dataset_dir)
    # Bad settings fail before the run folder records them (a corrected rerun must not
    # be refused as "made with different settings").
    validate_config(cfg.stage1)
    validate_config(cfg.stage2)
    if not 0.0 < cfg.scribbles.length <= 1.0:
        raise DmspsError(f"scribbles.length must be in (0, 1], got {cfg.scribbles.length}")
    if cfg.scribbles.every_nth_slice < 1:
        raise DmspsError(
            f"scribbles.every_nth_slice must be at least 1, got {cfg.scribbles.every_nth_slice}"
        )
    if cfg.checkpoint not in ("best", "last"):
        raise DmspsError(f"checkpoint must be 'best' or 'last', not '{cfg.checkpoint}'")
    for key in ("init_from", "scribble_dir"):  # the pipeline sets both (stage 1 -> expand)
        if getattr(cfg.stage2, key):
            raise DmspsError(
                f"stage2.{key} is set by the pipeline (stage 1's checkpoint, the expanded "
                f"seeds), not by --set; to train stage 2 on your own, use `dmsps train "
                f"--stage 2 --{key.replace('_', '-')} ...`"
            )
    # Under torchrun every rank trains; rank 0 alone writes everything else.
    info = distributed.setup(resolve_device(cfg.stage1.device))
    main_rank = info.is_main
    if main_rank:
        _check_config(out, cfg)
    distributed.barrier(info)
    if not main_rank:
        log = _silent  # progress and summaries come from rank 0
        progress = False
    timings: dict[str, float] = {}
    split = eval_split(ds, cfg)

    def step(name: str):
        log(f"== {name}")
        return time.perf_counter()

    # Both stages read patches from one preprocessed-case cache (patch training only).
    s1cfg = copy.deepcopy(cfg.stage1)
    s1cfg.cache_dir = s1cfg.cache_dir or str(out / "cache")
    scribble_dir = None
    if cfg.scribbles.active:
        t = step("thinning out the training scribbles")
        scribble_dir = out / "scribbles"
        if main_rank:
            log(thin_out_scribbles(ds, ds.split("train"), scribble_dir, cfg.scribbles, progress))
        distributed.barrier(info)
        s1cfg.scribble_dir = str(scribble_dir)
        timings["scribbles"] = time.perf_counter() - t
    t = step("stage 1: training on scribbles")
    s1 = Trainer(ds, s1cfg, out / "stage1", progress).fit(resume=True)
    timings["stage1"] = time.perf_counter() - t
    if s1["status"] == "stopped":  # stage1.stop_at: nothing after it may use half a stage
        return _stopped("stage1", s1, split, log)
    ckpt_name = f"{cfg.checkpoint}.pt"
    best1 = out / "stage1" / "checkpoints" / ckpt_name

    seeds = out / "expand" / "seeds"
    t = step("expanding scribbles with confident stage-1 predictions")
    summary_path = seeds / "expand_summary.json"
    exp: dict = {}
    if not main_rank:
        pass
    elif summary_path.is_file():
        exp = json.loads(summary_path.read_text())
    else:
        exp = expand_dataset(
            best1,
            ds,
            ds.split("train"),
            seeds,
            cfg.expand.threshold,
            cfg.expand.tta,
            cfg.expand.keep_largest,
            cfg.stage1.device,
            progress,
            target=cfg.expand.target,
            scribble_dir=scribble_dir,
        )
    distributed.barrier(info)
    if main_rank:
        log(format_summary(exp))
    timings["expand"] = time.perf_counter() - t

    t = step("stage 2: training on expanded seeds")
    s2cfg = copy.deepcopy(cfg.stage2)
    s2cfg.init_from = str(best1)
    s2cfg.scribble_dir = str(seeds)
    s2cfg.cache_dir = s2cfg.cache_dir or s1cfg.cache_dir
    s2 = Trainer(ds, s2cfg, out / "stage2", progress).fit(resume=True)
    timings["stage2"] = time.perf_counter() - t
    if s2["status"] == "stopped":
        return _stopped("stage2", s2, split, log)

    if not main_rank:  # prediction, evaluation and the report are rank 0's
        distributed.barrier(info)
        return {"split": split, "rank": info.rank, "train": {"stage1": s1, "stage2": s2}}
    results = {}
    cases = ds.split(split)
    for stage in ("stage1", "stage2"):
        t = step(f"predicting the {split} split with {stage}")
        pred_dir = out / "predictions" / stage
        predict_folder(
            out / stage / "checkpoints" / ckpt_name,
            ds.root,
            pred_dir,
            uncertainty=True,
            split=split,
            device=cfg.stage1.device,
            progress=progress,
            largest_component=cfg.largest_component,
        )
        missing = [c for c in cases if ds.paths(c).label is None]
        if missing:
            raise DmspsError(
                f"{ds.root}: no label for {split} case(s) {missing[:5]}; cannot evaluate"
            )
        # Ours, plus the authors' (medpy) convention in summary_medpy.json beside it.
        results[stage] = evaluate_folders(
            pred_dir,
            ds.root,
            out / "metrics" / stage,
            progress=progress,
            conventions=("monai", "medpy"),
        )
        timings[f"predict+evaluate {stage}"] = time.perf_counter() - t
    write_report(out, ds, cases, results, {"stage1": s1, "stage2": s2}, exp, split)
    result = {
        "split": split,
        "metrics": results,
        "train": {"stage1": s1, "stage2": s2},
        "expand": exp,
        "timings_s": timings,
    }
    write_json(out / "results.json", result)
    distributed.barrier(info)
    return result
