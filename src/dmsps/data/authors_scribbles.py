"""Scribbles drawn the way the DMSPS authors drew them for the paper's data.

The paper's WORD and BraTS 2020 scribbles came from the authors' generator
(``code/dataloader/scribble_generater.py`` in HiLab-git/DMSPS, after the one in WORD's
repository). This module is our own implementation of what that script does, so that
simulated scribbles can look like the ones the paper trained on; ``simulation.py`` keeps
our other style. Per axial slice (array axis 0) and per class:

* the class's pixels are eroded with a 3x3 square, ``ceil(a + u * (b - a))`` times for
  ``u`` uniform in [0, 1) and ``(a, b) = erosion`` (default (1, 7): 2 to 7 erosions),
  but only where the class covers more than ``ERODE_ABOVE`` pixels of the slice;
* the eroded mask is skeletonised (scikit-image, Lee's method);
* background (class 0): the whole skeleton is the stroke, one pixel wide, every branch
  kept, on every slice that has background;
* every other class: the skeleton's 8-connected pieces (the one piece, or the largest
  plus every other piece of more than ``MIN_PIECE`` pixels) each get one random path:
  from the piece's first end point in row-major order (its first pixel if it has none),
  step to a random 8-neighbour on the piece not yet on the path until there is none
  (a self-avoiding random walk); a path whose end lands next to a branch point it passed
  is cut back to the last branch point (so a walk that turned into a one-pixel spur or
  closed a small loop leaves that off). The path is widened by one 3x3 dilation (3 pixels
  wide), then, where the class covers more than ``MOVE_ABOVE`` pixels, shifted by whole
  pixels up to ``MAX_SHIFT`` in y and x and turned by up to ``MAX_ANGLE`` degrees about
  the slice centre (nearest neighbour), and finally clipped to the class's pixels.

Where ours differs from the script (all on purpose):

* Randomness: one NumPy generator per call (``rng``), which importers seed per case, so
  a case's scribble does not depend on the cases before it; the script seeds Python's and
  NumPy's generators once with 2022 at import and then draws case after case.
* Background strokes get class 0 directly; the script gives them ``label.max() + 1`` and
  maps a fixed value back to 0, so on a volume missing the highest class its background
  strokes came out as that class. Unannotated pixels hold ``ignore`` (default C, the
  number of classes; the script's files hold 255).
* The script compares the skeleton with 255 (scikit-image's old 0/255 output); current
  scikit-image returns booleans, with which that comparison yields no stroke at all. We
  take the skeleton's pixels, which is what the comparison meant.
* Each selected piece is walked once; the script walks the largest piece twice (it is
  both "the largest" and "more than 15 pixels") and, of two pieces of the same size, the
  first one twice and the other never. The cut back to the last branch point is made per
  piece; the script makes it once per slice, for whichever piece it walked last.
* Shift and rotation are applied as one backward mapping onto the class's own pixels,
  which is what translating, rotating with zero fill and clipping amount to.

Every step of the script per slice is kept otherwise: thresholds 900 and 1000 pixels,
the 15-pixel piece size, shifts in [-6, 6] drawn for every stroke, angles in [-15, 15].
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from dmsps.data.labels import check_label
from dmsps.data.simulation import centred_start
from dmsps.errors import DmspsError

#: Erode a class only on slices where it covers more than this many pixels.
ERODE_ABOVE = 900

#: Shift and turn a stroke only where its class covers more than this many pixels.
MOVE_ABOVE = 1000

#: Besides the largest skeleton piece, pieces of more than this many pixels get a path.
MIN_PIECE = 15

#: Largest shift of a stroke, in whole pixels along y and along x.
MAX_SHIFT = 6

#: Largest turn of a stroke about the slice centre, in degrees.
MAX_ANGLE = 15.0

#: Erosions before the skeleton: ceil(a + u * (b - a)) for u uniform in [0, 1).
DEFAULT_EROSION = (1, 7)

_SQUARE = np.ones((3, 3), dtype=bool)
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def check_erosion(erosion: tuple[int, int]) -> tuple[int, int]:
    """``(a, b)`` as two whole numbers with 0 <= a <= b, else a one-line error."""
    try:
        a, b = (int(v) for v in erosion)
        whole = all(float(v) == int(v) for v in erosion)
    except (TypeError, ValueError):
        whole, a, b = False, 0, -1
    if not whole or not 0 <= a <= b:
        raise DmspsError(
            f"erosion range must be two whole numbers MIN,MAX with 0 <= MIN <= MAX, got {erosion!r}"
        )
    return a, b


def check_style_options(density: float, erosion: tuple[int, int], option: str) -> None:
    """Options of a command that draws in this style: the erosion range, and a stroke
    density (``option`` names it) of 1, as the authors' strokes have no length setting."""
    check_erosion(erosion)
    if density != 1.0:
        raise DmspsError(
            f"{option} {density:g} shortens the strokes of --scribble-style dmsps; the "
            "authors' style draws whole strokes: leave it at 1 (shorten them in a run with "
            "--set scribbles.length=F), or choose --scribble-style dmsps"
        )


def authors_scribble(
    label: np.ndarray,
    num_classes: int,
    rng: np.random.Generator | int | None = None,
    erosion: tuple[int, int] = DEFAULT_EROSION,
    ignore: int | None = None,
    slice_step: int = 1,
) -> np.ndarray:
    """Scribbles in the DMSPS authors' style on a dense (Z, Y, X) label map (a 2D map is
    one slice); see the module docstring.

    Returns a uint8 array of the label's shape: the class on stroke pixels, ``ignore``
    (default ``num_classes``) elsewhere. ``rng`` is a Generator or a seed (the same seed
    gives the same scribbles). ``slice_step`` N > 1 draws on every N-th slice only, the
    ones ``simulation.keep_every_nth_slice`` keeps (centred on the middle slice), and
    spares the work on the others. (The authors' every-N-th variant starts at slice 0.)
    """
    if num_classes < 2:
        raise DmspsError(f"num_classes must be at least 2, got {num_classes}")
    ignore = num_classes if ignore is None else int(ignore)
    if not num_classes <= ignore <= 255:
        raise DmspsError(f"ignore value must be in {num_classes}..255, got {ignore}")
    if slice_step < 1:
        raise DmspsError(f"slice step must be at least 1, got {slice_step}")
    erosion = check_erosion(erosion)
    label = np.asarray(label)
    if label.ndim not in (2, 3):
        raise DmspsError(f"label must be a 2D or 3D array, got shape {label.shape}")
    label = check_label(label, num_classes)
    flat = label.ndim == 2
    vol = label[None] if flat else label
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = np.full(vol.shape, ignore, dtype=np.uint8)
    for z in range(centred_start(vol.shape[0], slice_step), vol.shape[0], slice_step):
        sl = vol[z]
        present = np.bincount(sl.ravel(), minlength=num_classes)
        for c in range(num_classes):
            if present[c] == 0:
                continue
            mask = sl == c
            if c == 0:
                out[z][_background_stroke(mask, int(present[c]), erosion, gen)] = 0
            else:
                out[z][_class_stroke(mask, int(present[c]), erosion, gen)] = c
    return out[0] if flat else out


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The mask's bounding box widened by one pixel (within the slice)."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    h, w = mask.shape
    return (
        slice(max(int(ys[0]) - 1, 0), min(int(ys[-1]) + 2, h)),
        slice(max(int(xs[0]) - 1, 0), min(int(xs[-1]) + 2, w)),
    )


def _skeleton(
    part: np.ndarray, area: int, erosion: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Skeleton (bool) of a mask after the random erosion.

    ``part`` is the mask in its bounding box plus one pixel (``_box``): beyond that, as
    beyond the slice's edge, there is nothing to erode or thin, so the result is the same
    as on the whole slice, for a fraction of the work.
    """
    if area > ERODE_ABOVE:
        a, b = erosion
        times = math.ceil(a + rng.random() * (b - a))
        if times > 0:  # scipy's iterations=0 would mean "until nothing changes"
            part = ndi.binary_erosion(part, _SQUARE, iterations=times)
    if not part.any():
        return np.zeros(part.shape, dtype=bool)
    return skeletonize(part, method="lee").astype(bool)


def _background_stroke(
    mask: np.ndarray, area: int, erosion: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """The background's stroke on one slice: its whole skeleton (bool, the slice's shape)."""
    box = _box(mask)
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = _skeleton(mask[box], area, erosion, rng)
    return out


def _class_stroke(
    mask: np.ndarray, area: int, erosion: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """The stroke of one foreground class on one slice (bool, the slice's shape)."""
    box = _box(mask)
    out = np.zeros(mask.shape, dtype=bool)
    part = mask[box]
    skeleton = _skeleton(part, area, erosion, rng)
    if not skeleton.any():
        return out
    path = np.zeros(part.shape, dtype=bool)
    for piece in _pieces(skeleton):
        ys, xs = zip(*_random_path(piece, rng), strict=True)
        path[list(ys), list(xs)] = True
    # The path lies inside the mask, so its dilation stays inside the box (which ends
    # one pixel beyond the mask, or at the slice's edge like the slice itself).
    stroke = ndi.binary_dilation(path, _SQUARE)
    shift_y, shift_x = (int(v) for v in rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2))
    if area <= MOVE_ABOVE:
        out[box] = stroke & part
        return out
    angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
    offset = (box[0].start, box[1].start)
    return _moved(stroke, offset, mask, shift_y, shift_x, angle)


def _pieces(skeleton: np.ndarray) -> list[np.ndarray]:
    """The 8-connected pieces that get a path: the only one, or the largest plus every
    other one of more than MIN_PIECE pixels."""
    lab, n = ndi.label(skeleton, structure=_SQUARE)
    if n == 1:
        return [skeleton]
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    others = [i for i in range(1, n + 1) if i != largest and sizes[i] > MIN_PIECE]
    return [lab == i for i in (largest, *others)]


def _random_path(piece: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A self-avoiding random walk over a connected skeleton piece, as (y, x) pixels."""
    padded = np.pad(piece, 1)  # neighbours of edge pixels read False, never wrap
    ys, xs = np.nonzero(padded)
    neighbours = ndi.convolve(padded.astype(np.uint8), _SQUARE.astype(np.uint8), mode="constant")
    ends = np.nonzero(neighbours[ys, xs] == 2)[0]  # itself and exactly one neighbour
    first = int(ends[0]) if ends.size else 0
    start = (int(ys[first]), int(xs[first]))
    on_path = np.zeros_like(padded)
    on_path[start] = True
    path = [start]
    branches: list[tuple[int, int]] = []
    kept = len(path)  # length of the path up to and including the last branch point
    here = start
    while True:
        steps = [
            (here[0] + dy, here[1] + dx)
            for dy, dx in _OFFSETS
            if padded[here[0] + dy, here[1] + dx] and not on_path[here[0] + dy, here[1] + dx]
        ]
        if not steps:
            break
        if len(steps) > 1 and here != start:
            branches.append(here)
            kept = len(path)
        here = steps[int(rng.integers(len(steps)))]
        on_path[here] = True
        path.append(here)
    if any(max(abs(here[0] - y), abs(here[1] - x)) == 1 for y, x in branches):
        path = path[:kept]
    return [(y - 1, x - 1) for y, x in path]


def _moved(
    stroke: np.ndarray,
    offset: tuple[int, int],
    mask: np.ndarray,
    shift_y: int,
    shift_x: int,
    angle: float,
) -> np.ndarray:
    """The stroke (a part of the slice starting at ``offset``) shifted by (shift_y,
    shift_x), then turned by ``angle`` degrees about the slice centre (counter-clockwise
    as displayed, rows downward), nearest neighbour with empty fill, and clipped to
    ``mask`` (the slice's shape, as the result).

    Only pixels of ``mask`` can survive the clip, so each of them looks up where it came
    from: turned back about the centre, rounded to a pixel, shifted back.
    """
    ys, xs = np.nonzero(mask)
    cy, cx = (mask.shape[0] - 1) / 2.0, (mask.shape[1] - 1) / 2.0
    t = math.radians(angle)
    cos, sin = math.cos(t), math.sin(t)
    dy, dx = ys - cy, xs - cx
    # A turn counter-clockwise on screen maps (x, y) to (x cos + y sin, -x sin + y cos)
    # about the centre (y grows downward); its inverse takes each target pixel back.
    src_x = np.floor(dx * cos - dy * sin + cx + 0.5).astype(np.int64) - shift_x - offset[1]
    src_y = np.floor(dx * sin + dy * cos + cy + 0.5).astype(np.int64) - shift_y - offset[0]
    h, w = stroke.shape
    inside = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
    hit = np.zeros(ys.shape, dtype=bool)
    hit[inside] = stroke[src_y[inside], src_x[inside]]
    out = np.zeros(mask.shape, dtype=bool)
    out[ys[hit], xs[hit]] = True
    return out
