"""Random-walker pseudo-labels: scribbles grown over the image, no learning involved.

Grady's random walker (IEEE TPAMI 2006, ``skimage.segmentation.random_walker``) gives
each unannotated voxel the class whose scribble a random walk from it most likely
reaches first, walks being discouraged from crossing strong intensity edges. WSL4MIS
(code/dataloaders/acdc_pseudo_label_random_walker.py) labels each ACDC slice so, then
trains the network on the result with 0.5 (CE + Dice) as if it were dense
(code/train_weakly_supervised_pCE_random_walker_2D.py). The method ``random-walker``
does the same in this trainer: before training, the stage writes the pseudo-labels into
OUT/random_walker/ (one file per case, resumed if interrupted) and trains on them.

Differences, on purpose: a slice without scribbles is ignored (WSL4MIS: background);
a slice whose scribbles hold fewer than two classes keeps only its scribbles (WSL4MIS:
background unless all classes are drawn); 3D runs walk in 3D with the voxel spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.segmentation import random_walker

from dmsps.data.layout import Dataset
from dmsps.io.atomic import remove_temporaries
from dmsps.io.nifti import save_volume
from dmsps.progress import progress_bar
from dmsps.training.losses import dice_loss, partial_ce
from dmsps.training.method_base import Method

#: WSL4MIS: beta 100 on intensities mapped from [-0.35, 1.35] to [-1, 1].
BETA = 100.0
MARGIN = 0.35


def _unit_range(image: np.ndarray) -> np.ndarray:
    """Per channel, the 0.5-99.5th percentiles to [0, 1], then WSL4MIS's map to [-1, 1].

    WSL4MIS's ACDC slices are min-max scaled to [0, 1]; percentiles make the same range
    robust to a few bright voxels in CT or MRI.
    """
    out = np.empty(image.shape, np.float64)
    for c, channel in enumerate(image):
        lo, hi = np.percentile(channel, (0.5, 99.5))
        unit = (channel - lo) / (hi - lo) if hi > lo else np.zeros_like(channel, np.float64)
        out[c] = (unit + MARGIN) / (1 + 2 * MARGIN) * 2 - 1
    return out


def _walk(image: np.ndarray, scribble: np.ndarray, ignore: int, spacing=None) -> np.ndarray:
    """One region (a slice or a volume): image (C, *s), scribble (*s) -> labels (*s)."""
    present = np.unique(scribble[scribble != ignore])
    if present.size < 2:  # nothing to choose between: keep what was drawn
        return scribble.copy()
    # Markers 1..n by rank of the drawn classes: the walker numbers its output so.
    markers = np.where(scribble == ignore, 0, np.searchsorted(present, scribble) + 1)
    mode = "bf" if scribble.ndim == 2 else "cg_j"
    grown = random_walker(
        image, markers, beta=BETA, mode=mode, channel_axis=0, spacing=spacing, tol=1e-3
    )
    return present[grown - 1].astype(scribble.dtype)


def grow(
    image: np.ndarray, scribble: np.ndarray, ignore: int, per_slice: bool, spacing=None
) -> np.ndarray:
    """Pseudo-labels of one case: image (C, Z, Y, X), scribble (Z, Y, X) with ``ignore``.

    ``per_slice`` walks each Z slice on its own (2D runs); slices without scribbles are
    ``ignore`` throughout.
    """
    norm = _unit_range(image)
    if not per_slice:
        if not (scribble != ignore).any():
            return np.full_like(scribble, ignore)
        return _walk(norm, scribble, ignore, spacing)
    out = np.full_like(scribble, ignore)
    for z in range(scribble.shape[0]):
        if (scribble[z] != ignore).any():
            out[z] = _walk(
                norm[:, z], scribble[z], ignore, None if spacing is None else spacing[1:]
            )
    return out


def write_pseudo_labels(
    ds: Dataset,
    cases: list[str],
    out_dir: Path,
    per_slice: bool,
    scribble_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """One pseudo-label file per case in ``out_dir``; existing files are kept (resume)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ignore = ds.meta.ignore_value
    for case in progress_bar(cases, desc="random walker", disable=not progress):
        target = out_dir / f"{case}{ds.meta.file_ending}"
        if target.is_file():
            continue
        remove_temporaries(target)
        image, geom = ds.load_image(case)
        scribble = ds.load_scribble(case, scribble_dir, shape=geom.shape)
        if scribble is None:
            raise ds.missing_scribble(case, scribble_dir)
        spacing = tuple(float(s) for s in geom.spacing)
        seeds = grow(image, scribble, ignore, per_slice, spacing)
        save_volume(target, seeds, geom, np.uint8)
    return out_dir


class RandomWalkerLabels(Method):
    """0.5 (CE + Dice) on the random-walker pseudo-labels, both decoders averaged.

    Voxels left ``ignore`` (slices without scribbles) are out of both terms. The stage's
    scribbles are replaced by the pseudo-labels by the trainer (``grows_seeds``).
    """

    name = "random-walker"
    default_weight = 0.0
    grows_seeds = True

    def loss(self, main, aux, batch, iteration, generator=None):
        y, ig = batch.scribble, self.cfg.ignore
        valid = y != ig
        target = torch.where(valid, y, torch.zeros_like(y))
        ce = 0.5 * (partial_ce(main, y, ig) + partial_ce(aux, y, ig))
        dl = 0.5 * (
            dice_loss(torch.softmax(main, 1), target, mask=valid)
            + dice_loss(torch.softmax(aux, 1), target, mask=valid)
        )
        return 0.5 * (ce + dl), {"ce": ce.detach(), "dice": dl.detach()}
