"""Typed settings, their checks, and reading them back from files.

``TrainConfig`` drives one training stage (the network's architecture is inherited from
``NetworkSettings``, the same definition a checkpoint's ``ModelConfig`` uses).
``RunConfig`` is the whole pipeline (stage 1, expansion, stage 2): what presets
(``dmsps.presets``) define and what each run folder saves as ``config.json``.

Each settings type has one ``check()``; every command that takes settings (train, run,
compare, expand, plan) calls it, so a value is refused the same way everywhere. Saved
settings are read by ``read_settings`` only, which names the file in every error.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dmsps.data import normalization
from dmsps.device import AMP_CHOICES
from dmsps.errors import DmspsError
from dmsps.models.networks import NETWORKS
from dmsps.models.unet import NetworkSettings
from dmsps.training.losses import PL_LOSSES
from dmsps.training.methods import METHODS, method_help
from dmsps.training.samplers import CENTRING

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("auto", "poly", "constant")
SAMPLERS = ("auto", "slices", "patches")
BLENDS = ("gaussian", "constant")
EXPAND_TARGETS = ("ignore", "dense")
CHECKPOINTS = ("best", "last")
EVAL_SPLITS = ("auto", "train", "val", "test")


def _one_of(name: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise DmspsError(f"{name} must be one of {', '.join(allowed)}, not '{value}'")


def _known(what: str, value: str, registry: dict) -> None:
    """A name that must be in a registry (methods, networks)."""
    if value not in registry:
        raise DmspsError(f"unknown {what} '{value}' (choose from {', '.join(registry)})")


@dataclass
class TrainConfig(NetworkSettings):
    """One training stage. Defaults are the paper's ACDC stage-1 settings."""

    method: str = "dmsps"  # a METHODS name: pce, dmsps, dmpls, full or a baseline
    iterations: int = 30000
    batch_size: int = 24
    # 2D "slices": every slice is resized to this; "patches": (Y, X) or (Z, Y, X) crops.
    # One number means the same size on every axis.
    patch_size: list[int] = field(default_factory=lambda: [256, 256])
    sampler: str = "auto"  # auto (slices in 2D, patches in 3D) | slices | patches
    annotated_fraction: float = 0.5  # patches: share centred on an annotated voxel
    centring: str = "voxel"  # patches: centre on any annotated voxel | a class first
    normalization: list[str] = field(default_factory=list)  # [] = from dataset.json
    crop_nonzero: bool = False  # patches: crop cases to their non-zero box first
    target_spacing: list[float] = field(default_factory=list)  # patches: resample, mm
    cache_dir: str = ""  # patches: preprocessed-case cache; "" = OUT/cache
    optimizer: str = "sgd"  # sgd | adam
    schedule: str = "auto"  # auto (poly for sgd, constant for adam) | poly | constant
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    pl_weight: float | None = None  # None: the method's default weight
    rampup: int = 100  # sigmoid ramp-up length of the pseudo-label weight; 0 = none
    # Pseudo-label loss: "authors" H(q, softmax(softmax(z))), the form the authors' code
    # computes, or "soft-ce" H(q, softmax(z)), the paper's formula (docs/method.md). The
    # default is the authors' form: it measured better on ACDC over two seeds (stage 2
    # 0.866 against 0.854, docs/results.md section 8).
    pl_loss: str = "authors"
    augment: bool = True
    inference_overlap: float = 0.5  # sliding-window overlap (patch-trained models)
    inference_blend: str = "gaussian"  # sliding-window blending: gaussian | constant
    val_interval: int = 200
    patience: int = 10000  # early stop after this many iterations without improvement
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # CPU intra-op threads; 0 = PyTorch default
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (pays off on long GPU runs)
    amp: str = "auto"  # auto (bf16 on CUDA and on CPUs with native bf16) | none | bf16 | fp16
    log_interval: int = 25
    tensorboard: bool = False
    stop_at: int = 0  # stop (resumably) at this iteration; 0 = run to the end
    init_from: str = ""  # checkpoint to start from (stage 2 uses stage 1's best)
    scribble_dir: str = ""  # train on these seeds instead of scribblesTr (stage 2)

    def __post_init__(self) -> None:
        self.complete()

    def complete(self) -> None:
        """Fill in the short forms the CLI and older configs use: ``patch_size: 256``
        (release 0.1's square slice size) or one number for every axis."""
        ps = self.patch_size
        if isinstance(ps, int | float):
            ps = [int(ps)]
        ps = [int(p) for p in ps]
        if len(ps) == 1:
            ps = ps * self.spatial_dims
        self.patch_size = ps

    @property
    def resolved_sampler(self) -> str:
        if self.sampler != "auto":
            return self.sampler
        return "slices" if self.spatial_dims == 2 else "patches"

    def check(self) -> None:
        """Refuse settings that cannot work, before any data is read."""
        self.check_network()
        _known("network", self.network, NETWORKS)
        _known("method", self.method, METHODS)
        _one_of("pl_loss", self.pl_loss, list(PL_LOSSES))
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("centring", self.centring, CENTRING)
        _one_of("inference_blend", self.inference_blend, BLENDS)
        _one_of("amp", self.amp, ["auto", *AMP_CHOICES])
        for name in ("iterations", "batch_size", "val_interval", "log_interval"):
            if getattr(self, name) <= 0:
                raise DmspsError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "momentum", "rampup", "patience", "stop_at"):
            if getattr(self, name) < 0:
                raise DmspsError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.pl_weight is not None and self.pl_weight < 0:
            raise DmspsError(f"pl_weight must not be negative, got {self.pl_weight}")
        if not 0 <= self.annotated_fraction <= 1:
            raise DmspsError(f"annotated_fraction must be in [0, 1], got {self.annotated_fraction}")
        if self.resolved_sampler == "slices" and self.spatial_dims != 2:
            raise DmspsError("sampler 'slices' is 2D only; 3D training uses patches")
        ps = self.patch_size
        if len(ps) != self.spatial_dims or any(p <= 0 for p in ps):
            raise DmspsError(
                f"patch_size {ps} needs {self.spatial_dims} positive sizes for spatial_dims "
                f"{self.spatial_dims}"
            )
        multiples = list(self.multiples)
        if any(p % m for p, m in zip(ps, multiples, strict=True)):
            raise DmspsError(
                f"patch_size {ps} must be a multiple of {multiples} (axis by axis): the "
                f"network pools {len(self.features) - 1} times"
            )
        if self.target_spacing:
            if self.resolved_sampler != "patches":
                raise DmspsError("target_spacing needs the patches sampler (sampler=patches)")
            ts = self.target_spacing
            if len(ts) != 3 or any(t < 0 for t in ts) or not any(t > 0 for t in ts):
                raise DmspsError(
                    "target_spacing needs 3 sizes in mm (Z, Y, X), each positive or 0 to keep "
                    f"that axis, got {ts}"
                )
        if not 0 <= self.inference_overlap < 1:
            raise DmspsError(f"inference_overlap must be in [0, 1), got {self.inference_overlap}")
        for spec in self.normalization:
            normalization.parse(spec)


@dataclass
class ExpandConfig:
    threshold: float = 0.1  # normalised-entropy threshold for confident pixels
    tta: bool = False  # also average over flips when expanding
    keep_largest: bool = True  # per slice (2D) / volume (3D) and class: largest component
    # Stage-2 target: "ignore" (uncertain voxels unlabelled, scribbles merged) or "dense"
    # (uncertain voxels are background; the authors' original scripts).
    target: str = "ignore"
    # Keep the auxiliary decoder's feature dropout on while predicting the uncertainty,
    # as both author releases do (docs/method.md); off: both decoders see clean features.
    aux_dropout: bool = False
    # Background seeds within this many voxels (in-plane) of a voxel the model labels as
    # a structure stay unlabelled (0: none), so the background's seeds stop short of the
    # structures as theirs stop short of the true boundary. Confident seeds from a
    # partial 3D model covered 98.6 % of the background but 45 % of the RV, and stage 2
    # learnt a smaller RV (docs/results.md, section 12.3). Target ``ignore`` only.
    background_margin: int = 0

    def check(self) -> None:
        if not 0 < self.threshold <= 1:
            raise DmspsError(f"threshold must be in (0, 1], got {self.threshold}")
        _one_of("target", self.target, EXPAND_TARGETS)
        if self.background_margin < 0:
            raise DmspsError(f"background_margin must be >= 0, got {self.background_margin}")
        if self.background_margin and self.target != "ignore":
            raise DmspsError(
                "background_margin needs target ignore (with target dense every uncertain "
                "voxel is background)"
            )


@dataclass
class ScribbleConfig:
    """Sparser training scribbles, made inside the run folder (the paper's sparsity study)."""

    length: float = 1.0  # keep this fraction of every stroke (paper: 1/2 ... 1/16)
    every_nth_slice: int = 1  # keep every N-th annotated slice only

    @property
    def active(self) -> bool:
        return self.length != 1.0 or self.every_nth_slice != 1

    def check(self) -> None:
        if not 0.0 < self.length <= 1.0:
            raise DmspsError(f"length must be in (0, 1], got {self.length}")
        if self.every_nth_slice < 1:
            raise DmspsError(f"every_nth_slice must be at least 1, got {self.every_nth_slice}")


@dataclass
class RunConfig:
    preset: str = "acdc"
    stage1: TrainConfig = field(default_factory=TrainConfig)
    expand: ExpandConfig = field(default_factory=ExpandConfig)
    scribbles: ScribbleConfig = field(default_factory=ScribbleConfig)
    stage2: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            optimizer="adam", lr=1e-4, weight_decay=1e-5, iterations=20000
        )
    )
    eval_split: str = "auto"  # auto: test if it has cases with labels, else val
    # Which stage checkpoint expansion, stage-2 init and prediction use: "best" (highest
    # validation Dice, the paper's choice) or "last" (no selection on the validation set).
    checkpoint: str = "best"
    # Predictions of the evaluation split keep each class's largest 3D connected component
    # (as `dmsps predict --largest-component`). Off by default, as in the paper; on in
    # demo-brain, where one tumour per volume makes any other blob a false positive.
    largest_component: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Every section's check, with the section named in the message."""
        for name in ("stage1", "stage2", "expand", "scribbles"):
            try:
                getattr(self, name).check()
            except DmspsError as exc:
                raise DmspsError(f"{name}: {exc}") from None
        _one_of("checkpoint", self.checkpoint, CHECKPOINTS)
        _one_of("eval_split", self.eval_split, EVAL_SPLITS)
        for key in ("init_from", "scribble_dir"):  # the pipeline sets both (stage 1 -> expand)
            if getattr(self.stage2, key):
                raise DmspsError(
                    f"stage2.{key} is set by the pipeline (stage 1's checkpoint, the expanded "
                    f"seeds), not by --set; to train stage 2 on your own, use `dmsps train "
                    f"--stage 2 --{key.replace('_', '-')} ...`"
                )


# --- parsing overrides ---------------------------------------------------------------
def _type_name(typ: Any) -> str:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    return "null" if typ is type(None) else typ.__name__


def _parse_value(text: str, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(text, inner[0], name)
    if origin is list:
        items = text.replace(",", " ").split()
        if typing.get_origin(args[0]) is list:  # per-level sizes: 1x3x3,1x3x3,3x3x3
            return [_parse_value(t.replace("x", " "), args[0], name) for t in items]
        return [_parse_value(t, args[0], name) for t in items]
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return typ(text)
    except ValueError:
        raise DmspsError(f"bad value for {name}: {text!r} (expected {typ.__name__})") from None


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def set_field(cfg: Any, dotted: str, text: str) -> None:
    """Apply ``section.field=value`` (or ``field=value``) to a dataclass tree."""
    parts = dotted.replace("-", "_").split(".")
    obj = cfg
    for part in parts[:-1]:
        if not hasattr(obj, part) or not dataclasses.is_dataclass(getattr(obj, part)):
            raise DmspsError(f"unknown config section '{part}' in '{dotted}'")
        obj = getattr(obj, part)
    name = parts[-1]
    hints = _hints(type(obj))
    if name not in hints:
        known = ", ".join(f.name for f in fields(obj))
        raise DmspsError(f"unknown config field '{dotted}' (known here: {known})")
    setattr(obj, name, _parse_value(text, hints[name], dotted))


def apply_overrides(cfg: Any, pairs: list[str]) -> Any:
    """A copy of ``cfg`` with ``section.field=value`` pairs applied (not yet checked)."""
    cfg = copy.deepcopy(cfg)
    for pair in pairs:
        if "=" not in pair:
            raise DmspsError(f"override '{pair}' must look like section.field=value")
        key, value = pair.split("=", 1)
        set_field(cfg, key.strip(), value.strip())
    _complete_tree(cfg)
    return cfg


def _complete_tree(cfg: Any) -> None:
    if hasattr(cfg, "complete"):
        cfg.complete()
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _complete_tree(value)


# --- reading saved settings ----------------------------------------------------------
def _from_json(typ: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as ``typ``, checked; ``where`` names it in errors."""
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise DmspsError(f"{where or 'the settings'} must be an object, not {value!r}")
        hints = _hints(typ)
        kwargs = {}
        for key, item in value.items():
            if key not in hints:
                known = ", ".join(hints)
                raise DmspsError(f"unknown setting '{where}{key}' (known here: {known})")
            kwargs[key] = _from_json(hints[key], item, f"{where}{key}.")
        return typ(**kwargs)
    name = where.rstrip(".")
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_json(inner[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise DmspsError(f"{name} must be a {_type_name(typ)}, not {value!r}")
        return [_from_json(args[0], v, where) for v in value]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(typ, True)
    if not ok:
        raise DmspsError(f"{name} must be {_type_name(typ)}, not {value!r}")
    return float(value) if typ is float else value


def from_dict(cls, data: dict) -> Any:
    """Rebuild a dataclass tree from parsed JSON; unknown keys and wrong types are errors,
    missing keys take their defaults (settings added since the file was written)."""
    return _from_json(cls, data, "")


def read_settings(path: str | Path, cls: type | None = None) -> Any:
    """The one reader of saved settings: a run's ``config.json`` (RunConfig) or a stage
    folder's (TrainConfig); ``cls=None`` tells them apart by their keys. Every problem
    (missing, not JSON, unknown setting, wrong type, a value its check refuses) is one
    line that names the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DmspsError(f"{path}: settings file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DmspsError(f"{path}: cannot read settings ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DmspsError(f"{path}: not valid JSON ({exc})") from None
    if cls is None:
        cls = RunConfig if isinstance(data, dict) and "stage1" in data else TrainConfig
    try:
        cfg = from_dict(cls, data)
        _complete_tree(cfg)
        cfg.check()
    except DmspsError as exc:
        raise DmspsError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise DmspsError(f"{path}: not a dmsps settings file ({exc})") from None
    return cfg


# --- comparing settings --------------------------------------------------------------
#: TrainConfig fields a run or stage folder may be resumed or reused with other values
#: of: where and how fast it runs, how it logs, where it stops. They do not change what
#: is trained.
FREE_SETTINGS = ("device", "threads", "log_interval", "tensorboard", "stop_at", "cache_dir")


def comparable(settings: dict) -> dict:
    """A TrainConfig or RunConfig as a plain dict without the FREE_SETTINGS, so that two
    can be compared for "would train the same"."""
    plain = json.loads(json.dumps(settings))
    stages = [plain[k] for k in ("stage1", "stage2") if isinstance(plain.get(k), dict)]
    for stage in stages or [plain]:
        for key in FREE_SETTINGS:
            stage.pop(key, None)
        # Only dmsps reads the loss form: runs of other methods made before its default
        # changed (2026-12-03) still count as the same.
        if stage.get("method", "dmsps") != "dmsps":
            stage.pop("pl_loss", None)
    return plain


def diff_settings(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``["stage1.lr: 0.01 -> 0.03", ...]``: where two settings dicts differ, for errors."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_settings(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va} -> {vb}")
    return out


def refuse_other_settings(old: dict, new: dict, what: str, advice: str) -> None:
    """Raise ``"{what} (up to five differences); {advice}"`` when saved settings ``old``
    would train something else than ``new``; the FREE_SETTINGS (device, threads,
    logging, ...) may differ. The one check behind every reuse or resume of a folder."""
    old, new = comparable(old), comparable(new)
    if old != new:
        diffs = diff_settings(old, new)
        raise DmspsError(f"{what} ({'; '.join(diffs[:5])}); {advice}")


def refuse_other_saved(path: Path, cfg: Any, what: str, advice: str) -> None:
    """``refuse_other_settings`` against the settings saved in ``path`` (read through
    ``read_settings``, so that a setting added since then takes its default)."""
    old = read_settings(path, type(cfg))
    refuse_other_settings(asdict(old), asdict(cfg), what, advice)


# --- command-line options ------------------------------------------------------------
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` option per TrainConfig field (default: the preset's value)."""
    group = parser.add_argument_group("training settings (override the preset)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(
            flag, dest=f"cfg_{f.name}", default=None, metavar="V", help=field_help(f.name)
        )


def add_set_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set SECTION.FIELD=VALUE`` option of pipeline commands."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help=help,
    )


def train_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for f in fields(TrainConfig):
        value = getattr(args, f"cfg_{f.name}", None)
        if value is not None:
            out.append(f"{f.name}={value}")
    return out


def field_help(name: str) -> str | None:
    """Help of one TrainConfig field; the lists of methods and networks come from their
    registries, so they cannot drift from what exists."""
    if name == "method":
        return f"training method: {method_help()} (docs/method.md)"
    if name == "network":
        return f"network architecture: {' | '.join(NETWORKS)} (docs/CONTRIBUTING.md)"
    return _HELP.get(name)


_HELP = {
    "iterations": "training iterations",
    "batch_size": "slices per step",
    "patch_size": "slices: resize every slice to this; patches: patch size, (Y, X) or "
    "(Z, Y, X); one number for all axes",
    "spatial_dims": "2 (slices) or 3 (volumes)",
    "sampler": "auto | slices (resized 2D slices in memory) | patches (crops from the "
    "memory-mapped case cache)",
    "annotated_fraction": "share of patches centred on an annotated voxel",
    "centring": "how those patches pick their centre: voxel (any annotated voxel alike) | "
    "class (a scribbled class first, then one of its voxels; helps small structures)",
    "normalization": "per-channel schemes, e.g. zscore or ct-window:-150:250 "
    "(default: from dataset.json's channel names)",
    "crop_nonzero": "crop each case to its non-zero box before training (patches)",
    "target_spacing": "resample cases to this voxel spacing in mm, (Z, Y, X), before "
    "training; 0 keeps an axis (patches; predictions come back on the input grid)",
    "cache_dir": "folder for the preprocessed-case cache (default OUT/cache)",
    "encoder_dropout": "dropout per encoder level, e.g. 0,0,0,0,0 (default: the research "
    "code's 0.05,0.1,0.2,0.3,0.5)",
    "feature_dropout": "channel dropout of the auxiliary decoder's inputs (default 0.5)",
    "norm": "batch | instance",
    "activation": "leakyrelu | relu",
    "join": "decoder up-step: reduce (1x1 conv then upsample) | concat",
    "head_kernel": "output convolution size: 3 or 1",
    "z_pooling": "3D: how many of the deepest down-steps also halve Z (-1 = all; fewer "
    "for thick slices; pool_strides replaces it)",
    "kernel_sizes": "convolution kernel per level, e.g. 1x3x3,1x3x3,3x3x3,3x3x3,3x3x3 "
    "(default 3 on every axis)",
    "pool_strides": "pooling stride per down-step, e.g. 1x2x2,1x2x2,2x2x2,2x2x2 (default: "
    "2 in-plane, Z as z_pooling says)",
    "inference_overlap": "sliding-window overlap in [0, 1)",
    "inference_blend": "sliding-window blending: gaussian | constant",
    "optimizer": "sgd | adam",
    "schedule": "learning-rate schedule: auto (poly decay for sgd, constant for adam) | "
    "poly | constant",
    "lr": "initial learning rate",
    "pl_weight": "weight of the second loss term (default: the method's, see --method)",
    "rampup": "iterations of sigmoid ramp-up of the pseudo-label weight (0: none, as the "
    "authors' original scripts)",
    "pl_loss": "pseudo-label loss: authors (H(q, softmax(softmax(z))), what the authors' "
    "code computes; the default, measured better) | soft-ce (H(q, softmax(z)), the paper's "
    "formula)",
    "val_interval": "validate every N iterations",
    "patience": "early stop after N iterations without a better validation Dice",
    "device": "auto | cpu | cuda | cuda:N",
    "threads": "CPU threads (0 = PyTorch default)",
    "amp": "mixed precision: auto (bf16 on CUDA and on CPUs with native bf16, else fp32) | "
    "none (fp32) | bf16 | fp16",
    "compile": "use torch.compile",
    "stop_at": "stop at this iteration (resume later with --resume)",
    "init_from": "checkpoint to initialise the weights from",
    "scribble_dir": "folder of seeds to train on instead of scribblesTr",
}
