"""The paper's full pipeline in one run folder, every step resumable.

RUN/
  config.json                 the resolved RunConfig
  scribbles/                  sparser training scribbles (only with scribbles.length < 1
                              or scribbles.every_nth_slice > 1)
  stage1/                     checkpoints/{best,last}.pt, log.csv, final.json
  expand/seeds/               expanded seeds (scribble layout) + expand_summary.json
  stage2/                     as stage1, trained on the seeds from stage 1's chosen weights
  predictions/stage{1,2}/     label maps of the evaluation split (+ uncertainty/)
  metrics/stage{1,2}/         metrics.csv, summary.csv, summary.json (+ *_medpy: the
                              authors' metric convention)
  report/index.html           visual report
  results.json                what the run measured, and how long each step took

A step is skipped when its artefacts are complete, so rerunning the same command after
an interruption continues where it stopped. ``stages=("stage1",)`` runs stage 1 and its
evaluation only (how `dmsps compare` trains methods without a second stage).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from dmsps.config import RunConfig, ScribbleConfig, read_settings, refuse_other_settings
from dmsps.data.layout import Dataset
from dmsps.data.simulation import thin_out_files
from dmsps.device import resolve_device
from dmsps.errors import DmspsError
from dmsps.eval.evaluation import evaluate_folders
from dmsps.inference.predictor import predict_folder
from dmsps.io.atomic import write_json
from dmsps.io.lock import sole_writer
from dmsps.pipeline.expansion import expand_dataset, format_summary
from dmsps.pipeline.report import write_report
from dmsps.training import distributed
from dmsps.training.trainer import Trainer

#: The stages a run may hold: both (the paper's pipeline), or stage 1 alone.
STAGES = ("stage1", "stage2")


def eval_split(ds: Dataset, cfg: RunConfig) -> str:
    if cfg.eval_split != "auto":
        return cfg.eval_split
    test = ds.split("test")
    if test and all(ds.paths(c).label is not None for c in test):
        return "test"
    return "val"


def _check_config(out: Path, cfg: RunConfig, stages: tuple[str, ...]) -> None:
    """Record the settings of a new run folder; refuse to resume one made with others
    (device, threads, logging and stop_at may change between pieces of one run). A run
    of stage 1 alone is not bound by its expansion and stage-2 settings."""
    path = out / "config.json"
    if path.is_file():
        old, new = asdict(read_settings(path, RunConfig)), asdict(cfg)
        if "stage2" not in stages:
            for unused in ("expand", "stage2"):
                old.pop(unused), new.pop(unused)
        refuse_other_settings(
            old,
            new,
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
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for case in cases:
        source = ds.scribble_path(case)
        if source is not None:
            pairs.append((source, out_dir / f"{case}{ds.meta.file_ending}"))
    before, after = thin_out_files(
        pairs,
        ds.meta.num_classes,
        ds.meta.ignore_value,
        cfg.length,
        cfg.every_nth_slice,
        progress=progress,
        resume=True,
    )
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


class _Run:
    """One pipeline run: its settings, folder and timings, one method per step."""

    def __init__(self, ds: Dataset, out: Path, cfg: RunConfig, progress: bool, log) -> None:
        self.ds, self.out, self.cfg = ds, out, cfg
        # Under torchrun every rank trains; rank 0 alone writes everything else.
        self.info = distributed.setup(resolve_device(cfg.stage1.device))
        self.main = self.info.is_main
        self.progress = progress and self.main
        self.log = log if self.main else _silent  # progress and summaries from rank 0
        self.timings: dict[str, float] = {}
        self.split = eval_split(ds, cfg)
        self.chosen = f"{cfg.checkpoint}.pt"  # best or last: what every later step uses
        # Both stages read patches from one preprocessed-case cache (patch training).
        self.cache_dir = cfg.stage1.cache_dir or str(out / "cache")
        self.scribble_dir: Path | None = None

    def timed(self, name: str, key: str, work: Callable[[], object]):
        self.log(f"== {name}")
        t = time.perf_counter()
        result = work()
        self.timings[key] = time.perf_counter() - t
        return result

    def checkpoint(self, stage: str) -> Path:
        return self.out / stage / "checkpoints" / self.chosen

    def thin_scribbles(self) -> None:
        folder = self.out / "scribbles"
        if self.main:
            train = self.ds.split("train")
            self.log(thin_out_scribbles(self.ds, train, folder, self.cfg.scribbles, self.progress))
        distributed.barrier(self.info)
        self.scribble_dir = folder

    def stage1(self) -> dict:
        s1 = copy.deepcopy(self.cfg.stage1)
        s1.cache_dir = self.cache_dir
        if self.scribble_dir is not None:
            s1.scribble_dir = str(self.scribble_dir)
        return Trainer(self.ds, s1, self.out / "stage1", self.progress).fit(resume=True)

    def expand(self) -> dict:
        seeds = self.out / "expand" / "seeds"
        summary_path = seeds / "expand_summary.json"
        exp: dict = {}
        if self.main and summary_path.is_file():
            exp = json.loads(summary_path.read_text())
        elif self.main:
            exp = expand_dataset(
                self.checkpoint("stage1"),
                self.ds,
                self.ds.split("train"),
                seeds,
                self.cfg.expand,
                self.cfg.stage1.device,
                self.progress,
                scribble_dir=self.scribble_dir,
            )
        distributed.barrier(self.info)
        if self.main:
            self.log(format_summary(exp))
        return exp

    def stage2(self) -> dict:
        s2 = copy.deepcopy(self.cfg.stage2)
        s2.init_from = str(self.checkpoint("stage1"))
        s2.scribble_dir = str(self.out / "expand" / "seeds")
        s2.cache_dir = s2.cache_dir or self.cache_dir
        return Trainer(self.ds, s2, self.out / "stage2", self.progress).fit(resume=True)

    def predict_and_evaluate(self, stage: str) -> dict:
        pred_dir = self.out / "predictions" / stage
        predict_folder(
            self.checkpoint(stage),
            self.ds.root,
            pred_dir,
            uncertainty=True,
            split=self.split,
            device=self.cfg.stage1.device,
            progress=self.progress,
            largest_component=self.cfg.largest_component,
        )
        # Ours, plus the authors' (medpy) convention in summary_medpy.json beside it.
        return evaluate_folders(
            pred_dir,
            self.ds.root,
            self.out / "metrics" / stage,
            progress=self.progress,
            conventions=("monai", "medpy"),
        )


def run_pipeline(
    dataset_dir: Path,
    out: Path,
    cfg: RunConfig,
    progress: bool = True,
    log=print,
    stages: Sequence[str] = STAGES,
) -> dict:
    """Stage 1 -> expand -> stage 2 -> predict -> evaluate -> report (see module doc)."""
    stages = tuple(stages)
    if stages not in (STAGES, STAGES[:1]):
        raise DmspsError(f"stages must be {STAGES} or {STAGES[:1]}, not {stages}")
    ds = Dataset(dataset_dir)
    # Bad settings fail before the run folder records them (a corrected rerun must not
    # be refused as "made with different settings").
    cfg.check()
    run = _Run(ds, Path(out), cfg, progress, log)
    with sole_writer(run.out, enabled=run.main):
        if run.main:
            _check_config(run.out, cfg, stages)
        distributed.barrier(run.info)
        cases = ds.split(run.split)
        missing = [c for c in cases if ds.paths(c).label is None]
        if missing:
            raise DmspsError(
                f"{ds.root}: no label for {run.split} case(s) {missing[:5]}; cannot evaluate"
            )

        if cfg.scribbles.active:
            run.timed("thinning out the training scribbles", "scribbles", run.thin_scribbles)
        trained = {"stage1": run.timed("stage 1: training on scribbles", "stage1", run.stage1)}
        # stop_at: nothing after a stopped stage may use half of it.
        if trained["stage1"]["status"] == "stopped":
            return _stopped("stage1", trained["stage1"], run.split, run.log)
        exp: dict = {}
        if "stage2" in stages:
            exp = run.timed(
                "expanding scribbles with confident stage-1 predictions", "expand", run.expand
            )
            trained["stage2"] = run.timed(
                "stage 2: training on expanded seeds", "stage2", run.stage2
            )
            if trained["stage2"]["status"] == "stopped":
                return _stopped("stage2", trained["stage2"], run.split, run.log)

        if not run.main:  # prediction, evaluation and the report are rank 0's
            distributed.barrier(run.info)
            return {"split": run.split, "rank": run.info.rank, "train": trained}
        metrics = {
            stage: run.timed(
                f"predicting the {run.split} split with {stage}",
                f"predict+evaluate {stage}",
                lambda stage=stage: run.predict_and_evaluate(stage),
            )
            for stage in stages
        }
        if "stage2" in stages:
            write_report(run.out, ds, cases, metrics, trained, exp, run.split)
        result = {
            "split": run.split,
            "metrics": metrics,
            "train": trained,
            "expand": exp,
            "timings_s": run.timings,
        }
        write_json(run.out / "results.json", result)
        distributed.barrier(run.info)
        return result
