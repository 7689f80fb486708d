"""Per-class Dice, HD95 and ASD for label volumes, in millimetres.

Conventions (the same as MONAI's ``compute_hausdorff_distance(percentile=95)`` and
``compute_average_surface_distance(symmetric=True)``, which the tests check against):

* Surface of a mask: its voxels with at least one 6-connected neighbour outside the mask;
  the outside of the array counts as background, so a mask touching the border has a
  surface there (and every voxel of a one-slice volume is surface).
* Distances: from each surface voxel of one mask to the nearest surface voxel of the other,
  exact Euclidean distance between voxel centres scaled by the spacing.
* HD95: the larger of the two directed 95th percentiles (linear interpolation), i.e.
  ``max(P95(pred->gt), P95(gt->pred))``. This is MONAI's and DeepMind's surface-distance
  convention; it keeps a one-sided error (e.g. a spurious blob that only the pred->gt
  direction sees) from being diluted by the other direction. Note: medpy's ``hd95``, used
  by many scribble-supervision papers, takes the 95th percentile of the *pooled* distances
  instead, which is usually lower, so published numbers may not compare one to one.
* ASD: the mean of the pooled distances of both directions,
  ``(sum(pred->gt) + sum(gt->pred)) / (n_pred + n_gt)`` (MONAI's symmetric ASD; medpy's
  ``assd`` is the mean of the two directional means instead).
* Empty masks: both empty -> Dice 1, HD95 0, ASD 0 (a correct "absent" prediction);
  exactly one empty -> Dice 0, HD95 and ASD NaN (undefined: no surface to measure to).
  ``summarise`` leaves NaN out of the means and reports how many there were. MONAI instead
  gives NaN or inf for these cases, and nnU-Net leaves Dice undefined when both are empty.

A second convention, ``medpy``, reproduces the authors' test scripts (HiLab-git/DMSPS,
medpy's ``dc``/``hd95``/``asd``) so that our figures can stand beside the paper's: a class
empty in the prediction *or* the ground truth scores Dice 0, HD95 0 and ASD 0 (zeros that
enter the means: a missed structure lowers Dice but improves HD95/ASD); HD95 is the 95th
percentile of the pooled distances of both directions; ASD is the mean of the
prediction->ground-truth distances only.

We compute the distances with scipy (Euclidean distance transforms on the bounding box of
pred ∪ gt) instead of calling MONAI: the numbers match, but MONAI needs torch, warns on
every empty mask and returns NaN/inf there, and computes the surfaces twice when both HD95
and ASD are wanted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dmsps.data.labels import check_label

METRICS = ("dice", "hd95", "asd")
#: Metric conventions: ``monai`` (ours, the default) and ``medpy`` (the authors' scripts).
METRIC_CONVENTIONS = ("monai", "medpy")


@dataclass(frozen=True)
class ClassMetrics:
    """Scores of one class in one case; HD95 and ASD in mm, NaN when undefined."""

    dice: float
    hd95: float
    asd: float


def _as_labels(volume: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """The volume as a class map; LabelError (a ValueError) unless it holds 0..C-1."""
    return check_label(
        volume, num_classes, what, kind=what, context=f" (evaluating {num_classes} classes)"
    )


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the bounding box of a non-empty mask, grown by ``margin`` inside the array."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=others))
        box.append(
            slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + margin + 1, mask.shape[axis]))
        )
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a 6-connected (face) neighbour outside it or outside the array."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (pred->gt, gt->pred) in mm for two non-empty boolean masks.

    Works on the bounding box of pred ∪ gt plus one voxel (as MONAI does), which is exact:
    a mask voxel on the box edge has a background neighbour just outside it, so it is a
    surface voxel either way, and every surface voxel lies inside the box, so the distance
    transform finds the same nearest voxels. Most of a volume is background, so this is
    where the speed comes from.
    """
    box = _bounding_box(pred | gt, margin=1)
    p, g = pred[box], gt[box]
    surf_p, surf_g = _surface(p), _surface(g)
    to_g = ndimage.distance_transform_edt(~surf_g, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~surf_p, sampling=spacing)
    return to_g[surf_p], to_p[surf_g]


def binary_metrics_all(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], conventions: Sequence[str]
) -> dict[str, ClassMetrics]:
    """The metrics under each convention, from one computation of the surface distances."""
    unknown = [c for c in conventions if c not in METRIC_CONVENTIONS]
    if unknown:
        raise ValueError(
            f"unknown metric convention {unknown[0]!r} (choose from "
            f"{', '.join(METRIC_CONVENTIONS)})"
        )
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    if n_pred == 0 or n_gt == 0:
        out = {}
        for c in conventions:
            if c == "medpy":
                out[c] = ClassMetrics(dice=0.0, hd95=0.0, asd=0.0)
            elif n_pred == n_gt:
                out[c] = ClassMetrics(dice=1.0, hd95=0.0, asd=0.0)
            else:
                out[c] = ClassMetrics(dice=0.0, hd95=math.nan, asd=math.nan)
        return out
    dice = float(2.0 * np.count_nonzero(pred & gt) / (n_pred + n_gt))
    d_pg, d_gp = surface_distances(pred, gt, spacing)
    out = {}
    for c in conventions:
        if c == "monai":
            hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
            asd = (d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size)
        else:
            hd95 = np.percentile(np.concatenate([d_pg, d_gp]), 95)
            asd = d_pg.mean()
        out[c] = ClassMetrics(dice=dice, hd95=float(hd95), asd=float(asd))
    return out


def evaluate_case(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    convention: str = "monai",
) -> dict[int, ClassMetrics]:
    """Metrics of the foreground classes 1..num_classes-1 of one case.

    ``pred`` and ``gt`` are label volumes (Z, Y, X) of the same shape; ``spacing`` is
    (sz, sy, sx) in mm (any dimensionality works if spacing matches it). Background (0) is
    not scored: its surface is mostly the image border, which says nothing about quality.
    """
    return evaluate_case_all(pred, gt, spacing, num_classes, (convention,))[convention]


def evaluate_case_all(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float],
    num_classes: int,
    conventions: Sequence[str],
) -> dict[str, dict[int, ClassMetrics]]:
    """``evaluate_case`` under several conventions at the cost of one."""
    if num_classes < 2:
        raise ValueError(
            f"num_classes must be at least 2 (background + one class), got {num_classes}"
        )
    pred = _as_labels(pred, num_classes, "prediction")
    gt = _as_labels(gt, num_classes, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != gt.ndim or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(f"spacing {spacing} must hold {gt.ndim} positive numbers")
    out: dict[str, dict[int, ClassMetrics]] = {c: {} for c in conventions}
    for label in range(1, num_classes):
        scores = binary_metrics_all(pred == label, gt == label, spacing, conventions)
        for c in conventions:
            out[c][label] = scores[c]
    return out


def dice_per_class(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> list[float]:
    """Dice of classes 1..K-1 over the whole volume (both empty counts as 1): the fast
    score that training validates with and keeps its best checkpoint by."""
    out = []
    for c in range(1, num_classes):
        p, g = pred == c, gt == c
        denom = p.sum() + g.sum()
        out.append(1.0 if denom == 0 else float(2 * (p & g).sum() / denom))
    return out


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean and population std (numpy's default, as most papers report) of defined values."""
    defined = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if defined.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(defined.mean()), "std": float(defined.std()), "n": int(defined.size)}


def summarise(
    rows: Iterable[Mapping[int, ClassMetrics]], class_names: Sequence[str] | None = None
) -> dict:
    """Mean ± std over cases per class, and over cases of the per-case foreground mean.

    ``rows`` holds one ``evaluate_case`` result per case; ``class_names`` names label values
    0..C-1 (background first). Undefined (NaN) distances are left out of means and counted
    in ``undefined``; ``n`` is the number of values each mean is over. The foreground mean
    averages each case over its classes with defined values, then takes mean ± std over
    cases, so its std is the spread between cases. JSON-ready: no NaN, None when no value.
    """
    rows = list(rows)
    labels = sorted({c for row in rows for c in row})

    def name(c: int) -> str:
        return class_names[c] if class_names is not None and c < len(class_names) else str(c)

    classes = []
    for c in labels:
        entry: dict = {"label": c, "name": name(c)}
        for metric in METRICS:
            entry[metric] = _stats([getattr(row[c], metric) for row in rows if c in row])
        entry["undefined"] = sum(1 for row in rows if c in row and math.isnan(row[c].hd95))
        classes.append(entry)
    foreground: dict = {}
    for metric in METRICS:
        per_case = []
        for row in rows:
            vals = [getattr(m, metric) for m in row.values() if not math.isnan(getattr(m, metric))]
            if vals:
                per_case.append(float(np.mean(vals)))
        foreground[metric] = _stats(per_case)
    return {"cases": len(rows), "classes": classes, "foreground_mean": foreground}
