"""Simulated scribbles from dense labels.

Real scribble datasets are rare, so for any data with dense labels we draw strokes the way
an annotator would: per slice and per class, one thin stroke well inside the structure.
Background gets two loops: one a few pixels around the foreground (as ACDC's annotators
drew them; it fixes the organs' outer boundary) and one further out through the distant
tissue, so bright vessels or fat far away are not left unconstrained. Strokes follow the
skeleton of the structure after eroding it away from its boundary (compact blobs, whose
skeleton is a point, get a loop inside their eroded core), so they never touch a class
border.

``density`` shortens every stroke to that fraction of its length, as in the DMSPS paper's
sparsity study (1, 1/2, 1/4, 1/8, 1/16): a contiguous piece of the stroke at a random
position is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order
from skimage.morphology import skeletonize

from dmsps.data.labels import check_label, check_scribble
from dmsps.errors import DmspsError
from dmsps.io.atomic import remove_temporaries
from dmsps.io.nifti import load_volume, save_volume
from dmsps.progress import progress_bar

#: A class region smaller than this (pixels, per slice) gets no stroke: an annotator would
#: not draw inside a few boundary pixels, and such regions are mostly partial volume.
MIN_AREA = 10

#: Erode a structure by this fraction of its half-thickness before skeletonising, so the
#: stroke keeps away from the boundary (thin structures fall back to less erosion).
ERODE_FRACTION = 0.4

#: Background regions are wide bands; eroding them in proportion would shrink the loop
#: to a corner, so their erosion is capped at this many pixels.
BACKGROUND_MARGIN = 2.0

#: A skeleton shorter than this fraction of the core's equivalent diameter means a compact,
#: blob-like core (a disc skeletonises to a point); trace the core's contour instead.
BLOB_RATIO = 0.75

_EIGHT = np.ones((3, 3), dtype=bool)
_CROSS = ndi.generate_binary_structure(2, 1)
_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _inner_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the nearest pixel outside ``mask``; the image border counts as outside."""
    padded = np.pad(mask, 1, constant_values=False)
    return ndi.distance_transform_edt(padded)[1:-1, 1:-1]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def _background_regions(label2d: np.ndarray) -> list[np.ndarray]:
    """Where the background strokes go: a band hugging the foreground, and the tissue beyond.

    Annotators circle the organ a few pixels out, which pins down the organ's outer
    boundary; a second loop further out tells the network that distant tissue (bright
    vessels, fat) is background too. Neither runs along the image border, which would only
    teach that the border is background.
    """
    bg = label2d == 0
    fg = ~bg
    if not fg.any():
        return [bg]
    dist = ndi.distance_transform_edt(bg)
    size = min(label2d.shape)
    inner = max(1.5, 0.015 * size)
    outer = inner + max(4.0, 0.05 * size)
    band = bg & (dist > inner) & (dist <= outer)
    if band.sum() < MIN_AREA:
        return [bg]
    far = bg & (dist > outer + inner)
    return [band, far] if far.sum() >= MIN_AREA else [band]


def _stroke_pixels(region: np.ndarray, max_margin: float = np.inf) -> np.ndarray:
    """Centre line of one region (bool mask): skeleton of its eroded core, or its contour."""
    dist = _inner_distance(region)
    max_dist = float(dist.max())
    margin = min(np.floor(ERODE_FRACTION * max_dist), max_margin)  # < max_dist: core not empty
    core = _largest_component(dist > margin)
    skeleton = _largest_component(skeletonize(core))
    diameter = 2.0 * np.sqrt(core.sum() / np.pi)
    if skeleton.sum() < BLOB_RATIO * diameter and core.sum() > 8:
        # A compact core: a loop just inside the core's edge is what annotators draw.
        contour = core & ~ndi.binary_erosion(core, structure=_CROSS)
        skeleton = _largest_component(contour)
    if not skeleton.any():
        skeleton = np.zeros_like(region)
        skeleton[np.unravel_index(int(dist.argmax()), dist.shape)] = True
    return skeleton


def _pieces(region: np.ndarray, count: int) -> list[np.ndarray]:
    """The ``count`` largest connected pieces of a region with at least MIN_AREA pixels."""
    lab, n = ndi.label(region, structure=_EIGHT)
    if n <= 1:
        return [region]
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    order = [int(i) for i in np.argsort(sizes)[::-1][:count] if sizes[i] >= MIN_AREA]
    return [lab == i for i in order] or [region]


def _stroke_graph(stroke: np.ndarray):
    """The stroke's pixels (ys, xs) and their 8-neighbour adjacency as a sparse matrix."""
    ys, xs = np.nonzero(stroke)
    n = ys.size
    index = np.full(stroke.shape, -1, dtype=np.int64)
    index[ys, xs] = np.arange(n)
    padded = np.pad(index, 1, constant_values=-1)
    rows, cols = [], []
    for dy, dx in _OFFSETS:
        nb = padded[1 + ys + dy, 1 + xs + dx]
        ok = nb >= 0
        rows.append(np.arange(n)[ok])
        cols.append(nb[ok])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n)).tocsr()
    return ys, xs, graph


def _contiguous_part(
    stroke: np.ndarray,
    fraction: float,
    rng: np.random.Generator | None = None,
    from_end: bool = False,
) -> np.ndarray:
    """Keep ``fraction`` of a connected stroke's pixels as one connected piece.

    A prefix of a breadth-first order over the stroke's pixel graph is always connected,
    so starting at a random pixel gives a random contiguous piece of the wanted length.
    ``from_end`` starts instead at one end of the stroke (the pixel farthest from its
    first pixel in scan order), which makes the piece deterministic.
    """
    ys, xs, graph = _stroke_graph(stroke)
    n = ys.size
    keep = max(1, round(fraction * n))
    if keep >= n:
        return stroke
    if from_end:
        start = int(breadth_first_order(graph, 0, directed=False, return_predecessors=False)[-1])
    else:
        start = int(_as_rng(rng).integers(n))
    order = breadth_first_order(graph, start, directed=False, return_predecessors=False)
    out = np.zeros_like(stroke)
    chosen = order[:keep]
    out[ys[chosen], xs[chosen]] = True
    return out


def _thicken(stroke: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Widen a 1-pixel stroke to about 2 pixels (a pen, not a hairline), staying inside.

    Growing by one pixel down and right only (a 2x2 pen) keeps the stroke 2 pixels wide;
    new pixels must lie at least 2 pixels inside the region.
    """
    grown = stroke.copy()
    grown[1:, :] |= stroke[:-1, :]
    grown[:, 1:] |= grown[:, :-1].copy()
    return stroke | (grown & (_inner_distance(region) >= 2))


def _check_label(label: np.ndarray, num_classes: int) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim not in (2, 3):
        raise DmspsError(f"label must be a 2D or 3D array, got shape {label.shape}")
    return check_label(label, num_classes).astype(np.int64)


def simulate_scribble(
    label: np.ndarray,
    num_classes: int,
    density: float = 1.0,
    rng: np.random.Generator | int | None = None,
    ignore: int | None = None,
    background_regions: int = 1,
) -> np.ndarray:
    """Simulate scribbles on a dense (Z, Y, X) label map (a 2D map is one slice).

    Returns a uint8 array of the label's shape holding the class on stroke pixels and
    ``ignore`` (default ``num_classes``) everywhere else. Every class present in a slice
    with at least ``MIN_AREA`` pixels gets one stroke. ``rng`` is a Generator or a seed;
    the same seed gives the same scribbles.

    ``background_regions``: background strokes go into the band around the foreground
    and the tissue beyond it; with N > 1 each of those is split into its connected
    pieces and the N largest get a stroke each. Between many organs (abdominal CT) the
    background falls apart into pieces (bowel, fat, muscle between organs) that one
    stroke would leave unconstrained, and annotators mark them.
    """
    if num_classes < 2:
        raise DmspsError(f"num_classes must be at least 2, got {num_classes}")
    if not 0.0 < density <= 1.0:
        raise DmspsError(f"density must be in (0, 1], got {density}")
    ignore = num_classes if ignore is None else int(ignore)
    if not 0 <= ignore <= 255 or ignore < num_classes:
        raise DmspsError(f"ignore value must be in {num_classes}..255, got {ignore}")
    if background_regions < 1:
        raise DmspsError(f"background_regions must be at least 1, got {background_regions}")
    label = _check_label(label, num_classes)
    flat = label.ndim == 2
    vol = label[None] if flat else label
    rng = _as_rng(rng)
    out = np.full(vol.shape, ignore, dtype=np.uint8)
    for z in range(vol.shape[0]):
        sl = vol[z]
        present = np.bincount(sl.ravel(), minlength=num_classes)
        for c in range(num_classes):
            if present[c] < MIN_AREA:
                continue
            regions = _background_regions(sl) if c == 0 else [sl == c]
            if c == 0 and background_regions > 1:
                regions = [piece for r in regions for piece in _pieces(r, background_regions)]
            for region in regions:
                stroke = _stroke_pixels(region, BACKGROUND_MARGIN if c == 0 else np.inf)
                if density < 1.0:
                    stroke = _contiguous_part(stroke, density, rng)
                stroke = _thicken(stroke, region)
                out[z][stroke] = c
    return out[0] if flat else out


def centred_start(count: int, step: int) -> int:
    """First kept slice of ``count`` when every ``step``-th is kept, centred so that the
    middle slice ``(count - 1) // 2`` is one of them (``keep_every_nth_slice``'s rule)."""
    return ((count - 1) // 2) % step


def keep_every_nth_slice(
    scribble: np.ndarray,
    step: int,
    ignore: int,
    offset: int | None = None,
    annotated_only: bool = False,
) -> np.ndarray:
    """Scribbles on every ``step``-th slice (axis 0) only; the rest becomes ``ignore``.

    Annotators of 3D volumes draw on a few slices, not on all of them. By default the
    kept slices are centred in the stack: offset ``(Z - 1) // 2 % step``, so one kept
    slice is the middle one, where structures are largest. ``annotated_only`` counts only
    the slices that hold a stroke (real scribbles may skip slices), centred the same way.
    """
    if step < 1:
        raise DmspsError(f"slice step must be at least 1, got {step}")
    out = np.array(scribble, copy=True)
    if step == 1:
        return out
    slices = np.arange(out.shape[0])
    if annotated_only:
        flat = out.reshape(out.shape[0], -1)
        slices = slices[(flat != ignore).any(axis=1)]
    z = slices.size
    start = centred_start(z, step) if offset is None else offset % step
    drop = np.ones(out.shape[0], bool)
    drop[slices] = True
    drop[slices[start::step]] = False
    out[drop] = ignore
    return out


def shorten_scribble(scribble: np.ndarray, fraction: float, ignore: int) -> np.ndarray:
    """Every stroke of an existing scribble shortened to ``fraction`` of its length.

    Per slice (axis 0; a 2D map is one slice) and class, each 8-connected stroke keeps one
    connected piece holding ``fraction`` of its pixels, starting at one of its ends, so
    the result does not depend on a seed. This is how the DMSPS paper's sparsity study
    shortens real ACDC scribbles (their script cuts each stroke's bounding box along its
    longer side instead, which on curved strokes such as the myocardium's ring can keep
    pieces of both arms).
    """
    if not 0.0 < fraction <= 1.0:
        raise DmspsError(f"scribble length fraction must be in (0, 1], got {fraction}")
    out = np.array(scribble, copy=True)
    if fraction == 1.0:
        return out
    vol = out[None] if out.ndim == 2 else out
    for z in range(vol.shape[0]):
        sl = vol[z]
        for c in np.unique(sl[sl != ignore]):
            lab, n = ndi.label(sl == c, structure=_EIGHT)
            kept = np.zeros(sl.shape, bool)
            for i in range(1, n + 1):
                kept |= _contiguous_part(lab == i, fraction, from_end=True)
            sl[(sl == c) & ~kept] = ignore
    return out


def thin_out_files(
    pairs: Sequence[tuple[Path, Path]],
    num_classes: int,
    ignore: int,
    length: float,
    every_nth_slice: int,
    progress: bool = True,
    resume: bool = False,
) -> tuple[int, int]:
    """Sparser copies of existing scribble files: each ``(source, target)`` pair gets
    strokes at ``length`` of their length (``shorten_scribble``) on every
    ``every_nth_slice``-th annotated slice (``keep_every_nth_slice``). The paper's
    sparsity study on real scribbles; what `dmsps scribble --from-scribbles` and a run's
    ``scribbles`` settings both do.

    Targets are written atomically; with ``resume`` a target that exists is an earlier,
    interrupted call's finished file and is read instead. Returns the annotated voxels
    (before, after).
    """
    before = after = 0
    for source, target in progress_bar(
        pairs, desc="thin out scribbles", unit="volume", disable=not progress
    ):
        data, geometry = load_volume(source, np.float32)
        scribble = check_scribble(data, num_classes, ignore, source)
        if resume and target.is_file():
            thinner, _ = load_volume(target, np.int16)
        else:
            remove_temporaries(target)  # of a killed run
            thinner = shorten_scribble(scribble, length, ignore)
            thinner = keep_every_nth_slice(thinner, every_nth_slice, ignore, annotated_only=True)
            save_volume(target, thinner, geometry, np.uint8)
        before += int((scribble != ignore).sum())
        after += int((thinner != ignore).sum())
    return before, after
