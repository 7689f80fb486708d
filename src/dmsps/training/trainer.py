"""The one training loop for every method, stage, dimension and device.

``Trainer.fit`` is a short sequence of steps that a variant overrides one at a time (as
nnU-Net's trainer variants do): ``build_model``, ``build_data``, ``make_optimizer``,
``set_lr``, ``train_step``, ``validate``, ``save_best`` / ``save_last`` and ``log``.

Resumable and deterministic on CPU: the data/augmentation generator, the global torch
RNG (dropout), optimizer state and the iteration are all in ``last.pt``; a resumed run
reaches the same weights as an uninterrupted one. ``last.pt`` is written at every
validation and when Ctrl-C stops the run, which happens at the end of the running
iteration (a second Ctrl-C stops at once, keeping the last ``last.pt``).
"""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmsps.config import TrainConfig, refuse_other_saved
from dmsps.data import normalization
from dmsps.data.cache import CaseCache
from dmsps.data.layout import Dataset
from dmsps.device import precision_name, resolve_amp, resolve_device, tune_glibc_malloc
from dmsps.errors import DmspsError, missing_extra
from dmsps.eval.metrics import dice_per_class
from dmsps.inference.inferers import Inferer, make_inferer
from dmsps.inference.uncertainty import label_map
from dmsps.io.atomic import remove_temporaries, write_json, write_text
from dmsps.io.lock import sole_writer
from dmsps.models.checkpoint import load_checkpoint, model_config, save_checkpoint
from dmsps.models.networks import build_model
from dmsps.models.unet import ModelConfig, count_parameters
from dmsps.progress import progress_bar
from dmsps.training import distributed
from dmsps.training.augment import augment_batch
from dmsps.training.method_base import Batch
from dmsps.training.methods import build_method
from dmsps.training.random_walker import write_pseudo_labels
from dmsps.training.samplers import (
    CachedVolumes,
    PatchSampler,
    Sampler,
    Volume,
    load_slices,
    load_volumes,
)
from dmsps.training.teacher import EmaTeacher

LOG_FIELDS = ["iteration", "loss", "sup", "pl", "w", "lr", "val_dice", "elapsed_s"]

#: Version of the checkpoint metadata layout (release 0.1 wrote none: version 1).
CHECKPOINT_FORMAT = 2


class Trainer:
    """Trains one stage into ``out``: checkpoints/{last,best}.pt, log.csv, final.json."""

    def __init__(
        self, dataset: Dataset, cfg: TrainConfig, out: Path, progress: bool = True
    ) -> None:
        cfg.complete()
        cfg.check()
        self.ds, self.cfg, self.out, self.progress = dataset, cfg, Path(out), progress
        meta = dataset.meta
        self.num_classes, self.ignore = meta.num_classes, meta.ignore_value
        self.model_cfg = ModelConfig(
            **cfg.network_settings(),
            in_channels=dataset.num_channels,
            num_classes=self.num_classes,
        )
        self.schemes = normalization.resolve(
            meta.channel_names, meta.extra.get("normalization"), cfg.normalization
        )
        self.device = resolve_device(cfg.device)
        # Under torchrun: this process's rank, its GPU and its share of the batch.
        self.dist = distributed.setup(self.device)
        self.device = distributed.device_for(self.device, self.dist)
        self.local_batch = distributed.share(cfg.batch_size, self.dist)
        self.progress = progress and self.dist.is_main
        self.amp = resolve_amp(cfg.amp, self.device, training=True)
        # fp16 needs loss scaling against underflow; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cpu":
            tune_glibc_malloc()
        self.method = build_method(
            cfg.method, self.ignore, cfg.pl_weight, cfg.rampup, cfg.pl_loss, cfg.iterations
        )
        self._cache: CaseCache | None = None
        self.teacher: EmaTeacher | None = None  # built in fit() for self-ensembling methods

    # --- paths -------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "checkpoints" / "best.pt"

    @property
    def final_path(self) -> Path:
        return self.out / "final.json"

    def is_complete(self) -> bool:
        return self.final_path.is_file() and self.best_path.is_file()

    # --- what a checkpoint says about the model -----------------------------------------
    def inference_settings(self) -> dict[str, Any]:
        """How this model is run over a volume (stored in its checkpoints)."""
        cfg = self.cfg
        if cfg.resolved_sampler == "slices":
            return {"kind": "resized-slices", "size": list(cfg.patch_size)}
        return {
            "kind": "sliding-window",
            "roi": list(cfg.patch_size),
            "overlap": cfg.inference_overlap,
            "blend": cfg.inference_blend,
        }

    def meta(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model_cfg.to_dict(),
            "class_names": self.ds.meta.class_names,
            "channel_names": self.ds.meta.channel_names,
            "ignore": self.ignore,
            "spatial_dims": self.cfg.spatial_dims,
            "patch_size": list(self.cfg.patch_size),
            "normalization": [str(s) for s in self.schemes],
            "crop_nonzero": self.cfg.crop_nonzero,
            "target_spacing": list(self.cfg.target_spacing),
            "inference": self.inference_settings(),
            "train_config": asdict(self.cfg),
            "dataset": str(self.ds.root),
        }

    def inferer(self) -> Inferer:
        return make_inferer(
            self.inference_settings(), self.device, self.amp, channels_last=self.cfg.channels_last
        )

    # --- steps -------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """A fresh network (or stage 1's weights for stage 2), on the device."""
        cfg = self.cfg
        model = build_model(self.model_cfg)
        if cfg.init_from:
            init = load_checkpoint(cfg.init_from)
            theirs, ours = model_config(init).to_dict(), self.model_cfg.to_dict()
            if theirs != ours:
                diffs = [
                    f"{k} {theirs[k]} there, {ours[k]} here" for k in ours if theirs[k] != ours[k]
                ]
                raise DmspsError(
                    f"{cfg.init_from}: its architecture differs from this run's "
                    f"({'; '.join(diffs[:3])}); start from a checkpoint trained with the same "
                    "network settings, or set them to the checkpoint's"
                )
            model.load_state_dict(init["model"])
        model.to(self.device)
        if cfg.channels_last:
            fmt = torch.channels_last if cfg.spatial_dims == 2 else torch.channels_last_3d
            model.to(memory_format=fmt)
        return model

    def case_cache(self) -> CaseCache:
        if self._cache is None:
            root = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.out / "cache"
            self._cache = CaseCache(
                root, self.ds, self.schemes, self.cfg.crop_nonzero, self.cfg.target_spacing
            )
        return self._cache

    def build_data(self) -> tuple[Sampler, Iterable[Volume]]:
        """The training sampler and the validation volumes (those with labels)."""
        cfg = self.cfg
        train, val = self.ds.split("train"), self.ds.split("val")
        scrib_dir = Path(cfg.scribble_dir) if cfg.scribble_dir else None
        need = self.method.needs_labels
        if self.method.grows_seeds:
            scrib_dir = self.grow_seeds(train, scrib_dir)
        if cfg.resolved_sampler == "slices":
            sampler = load_slices(
                self.ds,
                train,
                cfg.patch_size,
                scrib_dir,
                need_labels=need,
                progress=self.progress,
                schemes=self.schemes,
            ).to(self.device)
            vols = load_volumes(self.ds, val, self.progress, self.schemes)
            return sampler, [v for v in vols if v.label is not None]
        if not train:
            raise DmspsError(f"{self.ds.root}: the training split is empty")
        cache = self.case_cache()
        # Rank 0 fills the cache while the others wait, then they find it complete.
        if not self.dist.is_main:
            distributed.barrier(self.dist)
        cache.prepare(train, scrib_dir, need_labels=need, progress=self.progress)
        cache.prepare(val, with_scribbles=False, progress=self.progress, desc="preprocessing val")
        if self.dist.is_main:
            distributed.barrier(self.dist)
        sampler = PatchSampler(
            cache,
            train,
            cfg.patch_size,
            self.ignore,
            scrib_dir,
            need_labels=need,
            annotated_fraction=cfg.annotated_fraction,
            device=self.device,
            centring=cfg.centring,
        )
        return sampler, CachedVolumes(cache, val)

    def grow_seeds(self, train: list[str], scrib_dir: Path | None) -> Path:
        """Random-walker pseudo-labels of the training cases (rank 0 writes, all read)."""
        out = self.out / "random_walker"
        if self.dist.is_main:
            write_pseudo_labels(
                self.ds, train, out, self.cfg.spatial_dims == 2, scrib_dir, self.progress
            )
        distributed.barrier(self.dist)
        return out

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The stage's optimiser; public so benchmarks and tests build the loop's own.

        On CUDA the fused implementation: one kernel for the whole update instead of a
        few per parameter group, which matters in launch-bound training at small batch
        (equal to the unfused update up to float rounding; the CPU path keeps the
        unfused one, so CPU runs repeat earlier runs bit for bit).
        """
        cfg = self.cfg
        fused = self.device.type == "cuda"
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                model.parameters(),
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                fused=fused,
            )
        return torch.optim.Adam(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused
        )

    def set_lr(self, opt: torch.optim.Optimizer, it: int) -> float:
        """Poly decay, or constant; ``auto`` is the paper's: poly for SGD, constant for Adam."""
        cfg = self.cfg
        lr = cfg.lr
        schedule = cfg.schedule
        if schedule == "auto":
            schedule = "poly" if cfg.optimizer == "sgd" else "constant"
        if schedule == "poly":
            lr = cfg.lr * (1.0 - it / cfg.iterations) ** cfg.poly_power
        for group in opt.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, model, opt, sampler: Sampler, gen: torch.Generator, it: int) -> dict:
        """One iteration: sample, augment, forward, loss, backward, update.

        The loop calls exactly this, and so do ``benchmarks/speed.py`` and the
        equivalence test, so what is timed and checked is what trains. Returns the loss
        terms as tensors (no host sync here; the loop reads them every log interval).
        """
        cfg = self.cfg
        # One process: one generator for data and alpha. Several: each draws its own data,
        # and alpha (from ``gen``, in step on every rank) is the same everywhere.
        data_gen = gen
        if self.dist.active:
            data_gen = distributed.data_generator(cfg.seed, self.dist, it)
            # Dropout masks differ between ranks, and a resumed run redraws them exactly.
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=data_gen)))
        image, scrib, label, valid = sampler.sample(self.local_batch, data_gen)
        if cfg.augment:
            # The validity mask turns with the image: what comes in from beyond a patch's
            # edge is not part of the volume either.
            maps = {"scrib": (scrib, self.ignore), "label": (label, 0), "valid": (valid, 0)}
            given = {k: v for k, v in maps.items() if v[0] is not None}
            image, warped = augment_batch(
                image, [v[0] for v in given.values()], [v[1] for v in given.values()], data_gen
            )
            out = dict(zip(given, warped, strict=True))
            scrib, label, valid = out["scrib"], out.get("label"), out.get("valid")
        if cfg.channels_last:
            fmt = torch.channels_last if image.dim() == 4 else torch.channels_last_3d
            image = image.contiguous(memory_format=fmt)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            main, aux = model(image)
        loss, terms = self.method.loss(
            main.float(), aux.float(), Batch(image, scrib, label, valid), it, generator=gen
        )
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()
        if self.teacher is not None:
            self.teacher.update(model, it)
        terms["loss"] = loss.detach()
        return terms

    def _check_finite(self, terms: dict, it: int, lr: float) -> None:
        loss = _num(terms["loss"])
        if not np.isfinite(loss):
            raise DmspsError(
                f"{self.out}: training diverged, the loss is {loss} at iteration {it} "
                f"(lr {lr:.2e}, amp {self.cfg.amp}); checkpoints/last.pt still holds the "
                "last validated weights. Lower the learning rate, or use amp=none if mixed "
                "precision is on"
            )

    def validate(self, model: torch.nn.Module, volumes: Iterable[Volume]) -> float:
        """Mean foreground Dice of the main decoder over the validation volumes."""
        inferer = self.inferer()
        net = inferer.prepare(model)
        scores = []
        for v in volumes:
            pred = label_map(inferer(net, v.image)["main"]).numpy()
            scores.append(np.mean(dice_per_class(pred, v.label, self.num_classes)))
        return float(np.mean(scores))

    def payload(self, model: torch.nn.Module, it: int, best: dict) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "meta": self.meta(),
            "iteration": it,
            "best": best,
        }

    def save_best(self, model: torch.nn.Module, it: int, best: dict) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.best_path, self.payload(model, it, best))

    def save_last(self, model, opt, gen: torch.Generator, it: int, best: dict) -> None:
        if not self.dist.is_main:
            return
        payload = self.payload(model, it, best)
        payload["optimizer"] = opt.state_dict()
        payload["scaler"] = self.scaler.state_dict()
        if self.teacher is not None:
            payload["teacher"] = self.teacher.state_dict()
        payload["rng"] = {
            "torch": torch.get_rng_state(),
            "data": gen.get_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        save_checkpoint(self.last_path, payload)

    def resume_state(self, model, opt, gen: torch.Generator) -> tuple[int, dict, list[dict]]:
        """Restore weights, optimiser and RNG from last.pt: (iteration, best, log rows)."""
        ck = load_checkpoint(self.last_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        if self.teacher is not None:
            if "teacher" not in ck:
                raise DmspsError(
                    f"{self.last_path}: has no mean-teacher weights, so method "
                    f"'{self.cfg.method}' cannot resume from it; start a new output folder"
                )
            self.teacher.load_state_dict(ck["teacher"])
        torch.set_rng_state(ck["rng"]["torch"])
        gen.set_state(ck["rng"]["data"])
        if self.device.type == "cuda" and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)
        start = ck["iteration"]
        return start, ck["best"], _read_log(self.out / "log.csv", start)

    # --- the loop ----------------------------------------------------------------------
    def check_settings(self) -> None:
        """Refuse to reuse or resume a stage folder trained with other settings.

        Without this, a finished folder returned its old summary for new settings, and a
        resume mixed two configurations in one model. Settings that do not change what
        is trained (where, how fast, how it is logged, where to stop) may differ.
        """
        path = self.out / "config.json"
        if path.is_file():
            refuse_other_saved(
                path,
                self.cfg,
                f"{self.out}: was trained with other settings",
                "use a new output folder, or the same settings to resume or reuse it",
            )

    def fit(self, resume: bool = False) -> dict:
        """Train (or resume, or return a finished run's summary); one process per folder."""
        with sole_writer(self.out, enabled=self.dist.is_main):
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict:
        cfg = self.cfg
        self.check_settings()
        if self.is_complete():
            return json.loads(self.final_path.read_text())
        if self.last_path.exists() and not resume:
            raise DmspsError(
                f"{self.out}: holds an unfinished run; use --resume to continue it "
                "or choose another output folder"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            write_json(self.out / "config.json", asdict(cfg))
            # Half-written checkpoints of a killed run (hidden, never loaded): remove them.
            remove_temporaries(self.last_path)
            remove_temporaries(self.best_path)

        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        model = self.build_model()
        opt = self.make_optimizer(model)
        if self.method.teacher_decay is not None:
            self.teacher = EmaTeacher(model, self.method.teacher_decay, self.device.type, self.amp)
        self.method.teacher = self.teacher
        start, best, history = 0, {"dice": -1.0, "iteration": 0}, []
        if resume and self.last_path.exists():
            start, best, history = self.resume_state(model, opt, gen)
        sampler, val = self.build_data()
        has_val = len(val) > 0  # type: ignore[arg-type]

        step_model = distributed.wrap(model, self.device, self.dist)
        step_model = torch.compile(step_model) if cfg.compile else step_model
        main_rank = self.dist.is_main
        self._writer = _tensorboard(self.out) if cfg.tensorboard and main_rank else None
        self._log = _CsvLog(self.out / "log.csv", history) if main_rank else None
        t0 = time.perf_counter()
        elapsed0 = history[-1]["elapsed_s"] if history else 0.0
        status = "complete"
        bar = progress_bar(
            total=cfg.iterations,
            initial=start,
            desc=f"train {cfg.method}",
            disable=not self.progress,
            unit="it",
        )
        it = start
        ctrl_c = _CtrlC(enabled=not self.dist.active)
        try:
            model.train()
            while it < cfg.iterations:
                if ctrl_c.pending:  # between iterations: weights and RNG agree with `it`
                    self.save_last(model, opt, gen, it, best)
                    raise KeyboardInterrupt
                if cfg.stop_at and it >= cfg.stop_at:
                    status = "stopped"
                    break
                lr = self.set_lr(opt, it)
                terms = self.train_step(step_model, opt, sampler, gen, it)
                it += 1
                bar.update(1)
                row = None
                if it % cfg.log_interval == 0 or it == cfg.iterations:
                    row = {k: _num(v) for k, v in terms.items()}
                    row.update(iteration=it, lr=lr)
                    bar.set_postfix(
                        loss=f"{row['loss']:.3f}",
                        lr=f"{lr:.2e}",
                        img_s=f"{(bar.format_dict.get('rate') or 0.0) * cfg.batch_size:.1f}",
                    )
                if row is not None or it % cfg.val_interval == 0 or it == cfg.iterations:
                    # Before validation can save the weights: a diverged run must not
                    # overwrite its last good checkpoint.
                    self._check_finite(terms, it, lr)
                if it % cfg.val_interval == 0 or it == cfg.iterations:
                    # Every rank holds the same weights: rank 0 validates for all.
                    dice = self.validate(model, val) if has_val and main_rank else float("nan")
                    dice = distributed.broadcast(dice, self.dist)
                    model.train()
                    row = row or {"iteration": it, "lr": lr}
                    row["val_dice"] = dice
                    if (not has_val) or dice > best["dice"]:
                        best = {"dice": dice if has_val else float("nan"), "iteration": it}
                        self.save_best(model, it, best)
                    self.save_last(model, opt, gen, it, best)
                    if self.progress:
                        bar.write(
                            f"iter {it}: val mean Dice {dice:.4f} (best {best['dice']:.4f} "
                            f"at {best['iteration']})"
                        )
                    if has_val and it - best["iteration"] >= cfg.patience:
                        status = "early-stopped"
                        break
                if row is not None:
                    row["elapsed_s"] = elapsed0 + time.perf_counter() - t0
                    self.log(row, it)
        except KeyboardInterrupt:
            # Cut inside an iteration (a second Ctrl-C, or several processes): the weights
            # and RNG are part-way through a step, so last.pt keeps the last saved state.
            bar.close()
            raise
        finally:
            ctrl_c.restore()
        bar.close()
        if it % cfg.val_interval != 0 and it != cfg.iterations:
            self.save_last(model, opt, gen, it, best)
        if self._writer is not None:
            self._writer.close()
        summary = {
            "status": status,
            "iterations": it,
            "best_val_dice": best["dice"],
            "best_iteration": best["iteration"],
            "train_seconds": elapsed0 + time.perf_counter() - t0,
            "parameters": count_parameters(model),
            "train_samples": len(sampler),
            # What amp=auto came to on this machine (it depends on the device and CPU).
            "precision": precision_name(self.amp),
        }
        if status != "stopped" and main_rank:
            write_json(self.final_path, summary)
        distributed.barrier(self.dist)  # nobody reads this stage's files before they exist
        if ctrl_c.pending:  # Ctrl-C in the last iteration: the stage is complete, stop now
            raise KeyboardInterrupt
        return summary

    def log(self, row: dict, it: int) -> None:
        """One row of log.csv (and TensorBoard scalars when enabled); rank 0 only."""
        if self._log is None:
            return
        self._log.write(row)
        if self._writer is not None:
            for k, v in row.items():
                if k != "iteration" and v == v:
                    self._writer.add_scalar(k, v, it)


class _CtrlC:
    """Holds Ctrl-C (SIGINT) until the running iteration ends; ``pending`` says one came.

    An iteration cut half-way has updated some weights and drawn some of its random
    numbers: a last.pt saved from there resumes to other weights than an uninterrupted
    run. A second Ctrl-C interrupts at once. Only in the main thread, where Python's own
    handler is in place, and in a single process (under torchrun the ranks would stop at
    different iterations).
    """

    def __init__(self, enabled: bool) -> None:
        self.pending = False
        self._previous = None
        if (
            enabled
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _num(v) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


class _CsvLog:
    """Append-only CSV log; on resume the rows past the checkpoint are dropped first.

    That rewrite goes through a temporary file, so a kill during it keeps the old log.
    """

    def __init__(self, path: Path, history: list[dict]) -> None:
        self.path = path
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, LOG_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow(row)
        write_text(path, buf.getvalue())

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, LOG_FIELDS, extrasaction="ignore").writerow(
                {k: row.get(k, "") for k in LOG_FIELDS}
            )


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if int(row["iteration"]) <= upto:
                parsed = {k: float(v) if v not in ("", None) else "" for k, v in row.items()}
                parsed["iteration"] = int(row["iteration"])
                parsed["elapsed_s"] = parsed["elapsed_s"] or 0.0
                rows.append(parsed)
    return rows


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise missing_extra("tensorboard", "TensorBoard logging", exc) from None
    return SummaryWriter(str(out / "tensorboard"))
