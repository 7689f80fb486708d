"""Stage 2 seeds: expand scribbles with the stage-1 model's confident predictions.

p = mean softmax of both decoders (optionally over flips too); u = normalised entropy;
seed = argmax(p) where u < threshold. Then, per slice (2D models) or per volume (3D
models), each class keeps only its largest connected component. Two targets:

``ignore`` (default; PyMIC's, plus the scribbles written back, our choice)
    uncertain voxels and the other components get the ignore value; the original
    scribbles always stay annotated.
``dense`` (the authors' original scripts)
    every foreground class keeps its largest confident component and every other voxel,
    uncertain ones included, becomes background: a dense target, scribbles not merged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from dmsps.config import EXPAND_TARGETS, ExpandConfig
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.inference.postprocess import largest_component_per_class
from dmsps.inference.predictor import Predictor
from dmsps.inference.uncertainty import label_map, normalised_entropy
from dmsps.io.atomic import remove_temporaries, write_json
from dmsps.io.nifti import save_volume
from dmsps.progress import progress_bar


def expand_case(
    probs: torch.Tensor,
    scribble: np.ndarray,
    threshold: float,
    ignore: int,
    keep_largest: bool,
    per_slice: bool = True,
    target: str = "ignore",
    background_margin: int = 0,
) -> np.ndarray:
    """Seeds (Z, Y, X) from mean probabilities (K, Z, Y, X) and the case's scribble;
    ``background_margin``: see ``ExpandConfig``."""
    if target not in EXPAND_TARGETS:
        raise DmspsError(f"expansion target must be ignore or dense, not '{target}'")
    num_classes = probs.shape[0]
    u = normalised_entropy(probs).numpy()
    if target == "dense":
        confident = np.where(u < threshold, label_map(probs).numpy(), 0).astype(np.int16)
        if not keep_largest:
            return confident
        fg = largest_component_per_class(
            np.where(confident > 0, confident, ignore).astype(np.int16),
            num_classes,
            ignore,
            per_slice=per_slice,
        )
        return np.where((fg > 0) & (fg != ignore), fg, 0).astype(np.int16)
    labels = label_map(probs).numpy()
    seeds = np.where(u < threshold, labels, ignore).astype(np.int16)
    if keep_largest:
        seeds = largest_component_per_class(seeds, num_classes, ignore, per_slice=per_slice)
    if background_margin:
        near = _in_plane_band(labels > 0, background_margin)
        seeds[near & (seeds == 0)] = ignore
    annotated = scribble != ignore
    seeds[annotated] = scribble[annotated]
    return seeds


def _in_plane_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Voxels outside ``mask`` (Z, Y, X) within ``width`` voxels of it in their slice."""
    structure = np.zeros((1, 3, 3), bool)
    structure[0] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_dilation(mask, structure, iterations=width) & ~mask


def tta_probs(
    predictor: Predictor, image: np.ndarray, flips: bool, spacing: tuple | None = None
) -> torch.Tensor:
    """Mean-decoder probabilities of a raw (C, Z, Y, X) image, optionally averaged over
    flips of Y and of X (the in-plane axes, which every model treats alike)."""
    probs = predictor.probabilities(image, ("mean",), spacing)["mean"]
    if not flips:
        return probs
    total = probs.clone()
    for axis in (2, 3):  # flip Y, flip X of (C, Z, Y, X); probs are (K, Z, Y, X) too
        flipped = np.flip(image, axis=axis).copy()
        total += predictor.probabilities(flipped, ("mean",), spacing)["mean"].flip(axis)
    return total / 3


@dataclass
class ExpandSummary:
    cases: int = 0
    scribble_pixels: list[int] = field(default_factory=list)
    added_pixels: list[int] = field(default_factory=list)
    added_correct: list[int] = field(default_factory=list)  # only where labels exist
    # Coverage = true pixels of a class that the seeds label correctly / all its true
    # pixels: precision alone hides a threshold so strict that stage 2 learns nothing new.
    label_pixels: list[int] = field(default_factory=list)
    seed_correct: list[int] = field(default_factory=list)
    labelled_cases: int = 0

    def to_dict(self, class_names: list[str]) -> dict:
        out = {"cases": self.cases, "classes": {}}
        for c, name in enumerate(class_names):
            d = {"scribble_pixels": self.scribble_pixels[c], "added_pixels": self.added_pixels[c]}
            if self.labelled_cases:
                d["added_accuracy"] = (
                    self.added_correct[c] / self.added_pixels[c] if self.added_pixels[c] else None
                )
                d["coverage"] = (
                    self.seed_correct[c] / self.label_pixels[c] if self.label_pixels[c] else None
                )
            out["classes"][name] = d
        if self.labelled_cases:
            total = sum(self.added_pixels)
            out["added_accuracy"] = sum(self.added_correct) / total if total else None
            out["labelled_cases"] = self.labelled_cases
        return out


def expand_dataset(
    checkpoint: Path,
    dataset: Dataset,
    cases: list[str],
    out_dir: Path,
    cfg: ExpandConfig,
    device: str = "auto",
    progress: bool = True,
    scribble_dir: Path | None = None,
    overwrite: bool = False,
) -> dict:
    """Write expanded seeds for ``cases`` into ``out_dir``; resumes over existing files
    (``overwrite`` computes and replaces them all instead).

    ``scribble_dir`` holds the scribbles stage 1 trained on when they are not the
    dataset's (sparser ones): those are the ones merged into the seeds. With
    ``cfg.aux_dropout`` the auxiliary decoder keeps its feature dropout while predicting
    (the authors' code); its random masks are seeded per case, so a resumed expansion
    writes the seeds an uninterrupted one would.
    """
    cfg.check()
    # Full precision: the entropy threshold is sensitive to bf16 rounding of near-0/1
    # probabilities.
    predictor = Predictor(checkpoint, device, amp="none")
    if cfg.aux_dropout:
        predictor.model.dropout_at_inference = True
    per_slice = int(predictor.meta.get("spatial_dims", 2)) == 2
    k, ignore = dataset.meta.num_classes, dataset.meta.ignore_value
    out_dir.mkdir(parents=True, exist_ok=True)
    lists = ("scribble_pixels", "added_pixels", "added_correct", "label_pixels", "seed_correct")
    summary = ExpandSummary(**{name: [0] * k for name in lists})
    for case in progress_bar(cases, desc="expanding scribbles", disable=not progress):
        scribble = dataset.load_scribble(case, scribble_dir)
        if scribble is None:
            continue
        target_path = out_dir / f"{case}{dataset.meta.file_ending}"
        if target_path.is_file() and not overwrite:  # resume an interrupted run
            seeds = dataset.load_scribble(case, out_dir)
        else:
            remove_temporaries(target_path)
            image, geom = dataset.load_image(case)
            torch.manual_seed(zlib.crc32(case.encode()))  # aux dropout masks, if on
            probs = tta_probs(predictor, image, cfg.tta, geom.spacing)
            seeds = expand_case(
                probs,
                scribble,
                cfg.threshold,
                ignore,
                cfg.keep_largest,
                per_slice,
                cfg.target,
                cfg.background_margin,
            )
            save_volume(target_path, seeds, geom, np.uint8)
        label = dataset.load_label(case)
        added = (seeds != ignore) & (scribble == ignore)
        summary.cases += 1
        if label is not None:
            summary.labelled_cases += 1
        for c in range(k):
            summary.scribble_pixels[c] += int((scribble == c).sum())
            seed_c = seeds == c
            mask = added & seed_c
            summary.added_pixels[c] += int(mask.sum())
            if label is not None:
                truth = label == c
                summary.added_correct[c] += int((mask & truth).sum())
                summary.label_pixels[c] += int(truth.sum())
                summary.seed_correct[c] += int((truth & seed_c).sum())
    result = summary.to_dict(dataset.meta.class_names)
    result.update(
        threshold=cfg.threshold,
        tta=cfg.tta,
        target=cfg.target,
        aux_dropout=cfg.aux_dropout,
        background_margin=cfg.background_margin,
        checkpoint=str(checkpoint),
    )
    write_json(out_dir / "expand_summary.json", result)
    return result


def format_summary(summary: dict) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"{'class':<12}{'scribble px':>12}{'added px':>12}{'accuracy':>10}{'coverage':>10}"]
    for name, d in summary["classes"].items():
        acc, cov = fmt(d.get("added_accuracy")), fmt(d.get("coverage"))
        lines.append(
            f"{name:<12}{d['scribble_pixels']:>12}{d['added_pixels']:>12}{acc:>10}{cov:>10}"
        )
    return "\n".join(lines)
