"""The one training loop for every method, stage and device.

Resumable and deterministic on CPU: the data/augmentation generator, the global torch
RNG (dropout), optimizer state and the iteration are all in ``last.pt``; a resumed run
reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.infer import dice_per_class, labels, predict_volume
from dmsps.io.atomic import write_json
from dmsps.models.fold import fold_batchnorm
from dmsps.models.unet import DualDecoderNet, ModelConfig, count_parameters
from dmsps.train.augment import augment_batch
from dmsps.train.checkpoint import load_checkpoint, save_checkpoint
from dmsps.train.cpu import tune_glibc_malloc
from dmsps.train.data import SliceStore, Volume, load_slices, load_volumes
from dmsps.train.methods import METHODS, Batch, build_method

LOG_FIELDS = ["iteration", "loss", "sup", "pl", "w", "lr", "val_dice", "elapsed_s"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DmspsError(f"device '{name}' requested but CUDA is not available")
    return dev


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    table = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if name not in table:
        raise DmspsError(f"amp must be auto, none, bf16 or fp16, not '{name}'")
    return table[name]


def validate_config(cfg: TrainConfig) -> None:
    if cfg.method not in METHODS:
        raise DmspsError(f"unknown method '{cfg.method}' (choose from {', '.join(METHODS)})")
    if cfg.optimizer not in ("sgd", "adam"):
        raise DmspsError(f"optimizer must be sgd or adam, not '{cfg.optimizer}'")
    if cfg.schedule not in ("auto", "poly", "constant"):
        raise DmspsError(f"schedule must be auto, poly or constant, not '{cfg.schedule}'")
    for name in ("iterations", "batch_size", "patch_size", "val_interval"):
        if getattr(cfg, name) <= 0:
            raise DmspsError(f"{name} must be positive")
    if cfg.patch_size % 16:
        raise DmspsError("patch_size must be a multiple of 16")


class Trainer:
    """Trains one stage into ``out``: checkpoints/{last,best}.pt, log.csv, final.json."""

    def __init__(
        self, dataset: Dataset, cfg: TrainConfig, out: Path, progress: bool = True
    ) -> None:
        validate_config(cfg)
        self.ds, self.cfg, self.out, self.progress = dataset, cfg, Path(out), progress
        self.device = resolve_device(cfg.device)
        self.amp = resolve_amp(cfg.amp, self.device)
        # fp16 needs loss scaling against underflow; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cpu":
            tune_glibc_malloc()
        meta = dataset.meta
        self.num_classes, self.ignore = meta.num_classes, meta.ignore_value
        self.model_cfg = ModelConfig(
            in_channels=dataset.num_channels,
            num_classes=self.num_classes,
            features=list(cfg.features),
            encoder_dropout=_dropouts(len(cfg.features)),
        )
        self.method = build_method(cfg.method, self.ignore, cfg.pl_weight, cfg.rampup)

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

    def meta(self) -> dict:
        return {
            "model": self.model_cfg.to_dict(),
            "class_names": self.ds.meta.class_names,
            "channel_names": self.ds.meta.channel_names,
            "ignore": self.ignore,
            "patch_size": self.cfg.patch_size,
            "normalisation": "zscore",
            "dims": 2,
            "train_config": asdict(self.cfg),
            "dataset": str(self.ds.root),
        }

    # --- main --------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        cfg = self.cfg
        if self.is_complete():
            return json.loads(self.final_path.read_text())
        if self.last_path.exists() and not resume:
            raise DmspsError(
                f"{self.out}: holds an unfinished run; use --resume to continue it "
                "or choose another output folder"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", asdict(cfg))

        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        model = DualDecoderNet(self.model_cfg)
        if cfg.init_from:
            init = load_checkpoint(cfg.init_from)
            if init["meta"]["model"] != self.model_cfg.to_dict():
                raise DmspsError(f"{cfg.init_from}: its architecture differs from this run's")
            model.load_state_dict(init["model"])
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        opt = self.make_optimizer(model)

        start, best, history = 0, {"dice": -1.0, "iteration": 0}, []
        if resume and self.last_path.exists():
            ck = load_checkpoint(self.last_path)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
            start, best = ck["iteration"], ck["best"]
            torch.set_rng_state(ck["rng"]["torch"])
            gen.set_state(ck["rng"]["data"])
            if self.device.type == "cuda" and ck["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ck["rng"]["cuda"], self.device)
            history = _read_log(self.out / "log.csv", start)

        split_val = self.ds.split("val")
        scrib_dir = Path(cfg.scribble_dir) if cfg.scribble_dir else None
        store = load_slices(
            self.ds,
            self.ds.split("train"),
            cfg.patch_size,
            scrib_dir,
            need_labels=self.method.needs_labels,
            progress=self.progress,
        ).to(self.device)
        val = [v for v in load_volumes(self.ds, split_val, self.progress) if v.label is not None]

        step_model = torch.compile(model) if cfg.compile else model
        writer = _tensorboard(self.out) if cfg.tensorboard else None
        log = _CsvLog(self.out / "log.csv", history)
        t0 = time.perf_counter()
        elapsed0 = history[-1]["elapsed_s"] if history else 0.0
        status = "complete"
        bar = tqdm(
            total=cfg.iterations,
            initial=start,
            desc=f"train {cfg.method}",
            disable=not self.progress,
            unit="it",
            dynamic_ncols=True,
        )
        it = start
        try:
            model.train()
            while it < cfg.iterations:
                if cfg.stop_at and it >= cfg.stop_at:
                    status = "stopped"
                    break
                lr = self.set_lr(opt, it)
                terms = self.train_step(step_model, opt, store, gen, it)
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
                if it % cfg.val_interval == 0 or it == cfg.iterations:
                    dice = self._validate(model, val) if val else float("nan")
                    model.train()
                    row = row or {"iteration": it, "lr": lr}
                    row["val_dice"] = dice
                    improved = (not val) or dice > best["dice"]
                    if improved:
                        best = {"dice": dice if val else float("nan"), "iteration": it}
                        save_checkpoint(self.best_path, self._payload(model, it, best))
                    self._save_last(model, opt, gen, it, best)
                    if self.progress:
                        bar.write(
                            f"iter {it}: val mean Dice {dice:.4f} (best {best['dice']:.4f} "
                            f"at {best['iteration']})"
                        )
                    if val and it - best["iteration"] >= cfg.patience:
                        status = "early-stopped"
                        break
                if row is not None:
                    row["elapsed_s"] = elapsed0 + time.perf_counter() - t0
                    log.write(row)
                    if writer is not None:
                        for k, v in row.items():
                            if k != "iteration" and v == v:
                                writer.add_scalar(k, v, it)
        except KeyboardInterrupt:
            self._save_last(model, opt, gen, it, best)
            bar.close()
            raise
        bar.close()
        if it % cfg.val_interval != 0 and it != cfg.iterations:
            self._save_last(model, opt, gen, it, best)
        if writer is not None:
            writer.close()
        summary = {
            "status": status,
            "iterations": it,
            "best_val_dice": best["dice"],
            "best_iteration": best["iteration"],
            "train_seconds": elapsed0 + time.perf_counter() - t0,
            "parameters": count_parameters(model),
            "train_slices": len(store),
        }
        if status != "stopped":
            write_json(self.final_path, summary)
        return summary

    # --- pieces ------------------------------------------------------------------------
    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """The stage's optimiser; public so benchmarks and tests build the loop's own."""
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                model.parameters(),
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
            )
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

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

    def train_step(self, model, opt, store: SliceStore, gen: torch.Generator, it: int) -> dict:
        """One iteration: sample, augment, forward, loss, backward, update.

        The loop calls exactly this, and so do ``benchmarks/speed.py`` and the
        equivalence test, so what is timed and checked is what trains. Returns the loss
        terms as tensors (no host sync here; the loop reads them every log interval).
        """
        cfg = self.cfg
        image, scrib, label = store.sample(cfg.batch_size, gen)
        if cfg.augment:
            targets = [scrib] if label is None else [scrib, label]
            fills = [self.ignore] if label is None else [self.ignore, 0]
            image, warped = augment_batch(image, targets, fills, gen)
            scrib = warped[0]
            label = warped[1] if label is not None else None
        if cfg.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            main, aux = model(image)
        loss, terms = self.method.loss(
            main.float(), aux.float(), Batch(image, scrib, label), it, generator=gen
        )
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        self.scaler.update()
        terms["loss"] = loss.detach()
        return terms

    def _validate(self, model: torch.nn.Module, volumes: list[Volume]) -> float:
        model = fold_batchnorm(model, self.cfg.channels_last)
        scores = []
        for v in volumes:
            probs = predict_volume(
                model,
                v.image,
                self.cfg.patch_size,
                self.device,
                amp_dtype=self.amp,
                channels_last=self.cfg.channels_last,
            )
            pred = labels(probs).numpy()
            scores.append(np.mean(dice_per_class(pred, v.label, self.num_classes)))
        return float(np.mean(scores))

    def _payload(self, model: torch.nn.Module, it: int, best: dict) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "meta": self.meta(),
            "iteration": it,
            "best": best,
        }

    def _save_last(self, model, opt, gen: torch.Generator, it: int, best: dict) -> None:
        payload = self._payload(model, it, best)
        payload["optimizer"] = opt.state_dict()
        payload["scaler"] = self.scaler.state_dict()
        payload["rng"] = {
            "torch": torch.get_rng_state(),
            "data": gen.get_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        save_checkpoint(self.last_path, payload)


def _dropouts(levels: int) -> list[float]:
    base = [0.05, 0.1, 0.2, 0.3, 0.5]
    return base[:levels] if levels <= len(base) else base + [0.5] * (levels - len(base))


def _num(v) -> float:
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


class _CsvLog:
    """Append-only CSV log; on resume the rows past the checkpoint are dropped first."""

    def __init__(self, path: Path, history: list[dict]) -> None:
        self.path = path
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_FIELDS, extrasaction="ignore")
            w.writeheader()
            for row in history:
                w.writerow(row)

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
    except ImportError:
        raise DmspsError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard"
        ) from None
    return SummaryWriter(str(out / "tensorboard"))
