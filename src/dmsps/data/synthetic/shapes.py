"""What the synthetic generators share: argument checks, output folders, grids in mm,
smooth random fields and signed-distance shapes painted into image and label at once."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dmsps.errors import DmspsError
from dmsps.io.nifti import Geometry


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_int(value: int, option: str, lo: int, hi: int) -> int:
    if not _is_int(value) or not lo <= value <= hi:
        raise DmspsError(f"{option} must be an integer in {lo}..{hi}, got {value}")
    return int(value)


def check_seed(seed: int) -> int:
    if not _is_int(seed) or seed < 0:
        raise DmspsError(f"--seed must be a non-negative integer, got {seed}")
    return int(seed)


Grid = tuple[tuple[int, int, int], tuple[float, float, float]]


def check_shape(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> tuple[int, int, int]:
    """A (Z, Y, X) shape of integers within per-axis bounds."""
    values = list(shape) if isinstance(shape, Sequence) else []
    if len(values) != 3 or not all(
        _is_int(n) and a <= n <= b for n, a, b in zip(values, lo, hi, strict=True)
    ):
        bounds = " x ".join(f"{a}..{b}" for a, b in zip(lo, hi, strict=True))
        raise DmspsError(f"--shape must be three integers Z Y X in {bounds}, got {shape}")
    z, y, x = (int(n) for n in values)
    return z, y, x


def check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """A (sz, sy, sx) voxel size in mm, each in (0, 20]."""
    try:
        values = [float(v) for v in spacing]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3 or not all(np.isfinite(v) and 0.0 < v <= 20.0 for v in values):
        raise DmspsError(
            f"--spacing must be three voxel sizes Z Y X in mm, in (0, 20], got {spacing}"
        )
    z, y, x = values
    return z, y, x


def resolve_grid(
    shape: Sequence[int],
    spacing: Sequence[float] | None,
    field_of_view: tuple[float, float, float],
    min_field_of_view: tuple[float, float, float],
    shape_lo: Sequence[int],
    shape_hi: Sequence[int],
    what: str,
) -> Grid:
    """Shape and spacing of a generated volume; anatomy is drawn in mm.

    Without ``spacing`` the voxel size follows from the default ``field_of_view``, so a
    larger shape gives the same anatomy at a finer resolution. An explicit spacing sets
    the field of view (shape x spacing), which must hold the anatomy.
    """
    grid = check_shape(shape, shape_lo, shape_hi)
    if spacing is None:
        fz, fy, fx = field_of_view
        return grid, (fz / grid[0], fy / grid[1], fx / grid[2])
    step = check_spacing(spacing)
    fov = [n * d for n, d in zip(grid, step, strict=True)]
    if any(f < m - 1e-6 for f, m in zip(fov, min_field_of_view, strict=True)):
        have = " x ".join(f"{f:g}" for f in fov)
        need = " x ".join(f"{m:g}" for m in min_field_of_view)
        raise DmspsError(
            f"field of view {have} mm (shape x spacing) is too small for the {what}; it "
            f"needs at least {need} mm (Z Y X): choose a larger --shape or --spacing"
        )
    return grid, step


def radiological_geometry(
    shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> Geometry:
    """Axis-aligned geometry of a scanner-like volume, centred on the world origin.

    Array X runs towards the patient's left, Y towards posterior and Z towards the head,
    as in most NIfTI files converted from DICOM (and in BraTS): the affine has negative
    x and y steps. Shown with rows = Y and columns = X, a slice is in the radiological
    convention (patient's right on the left of the screen, anterior at the top).
    """
    sz, sy, sx = spacing
    nz, ny, nx = shape
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * (nx - 1) / 2, sy * (ny - 1) / 2, -sz * (nz - 1) / 2]
    return Geometry(affine=affine, shape=(int(nz), int(ny), int(nx)))


def prepare_out(out: Path, overwrite: bool, ours: Callable[[Path], bool]) -> None:
    """Refuse to mix with existing files; with ``overwrite``, clear what ``ours`` accepts.

    Anything else in the folder (a user's notes, another dataset) makes the call fail
    rather than disappear.
    """
    if out.exists() and not out.is_dir():
        raise DmspsError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise DmspsError(
            f"{out}: folder is not empty; use --force to replace it (same as --overwrite)"
        )
    foreign = sorted(p.name for p in out.iterdir() if not ours(p))
    if foreign:
        raise DmspsError(
            f"{out}: holds files that are not part of a generated dataset "
            f"({', '.join(foreign[:3])}); refusing to delete them, choose another folder"
        )
    for p in sorted(out.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def mm_axes(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> list[np.ndarray]:
    """Voxel centres in mm along Z, Y, X, with 0 at the centre of the volume."""
    return [
        ((np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32)
        for n, s in zip(shape, spacing, strict=True)
    ]


def smooth_field(rng: np.random.Generator, axes: Sequence[np.ndarray], scale: float) -> np.ndarray:
    """Zero-mean, unit-std random field that varies over about ``scale`` mm.

    Gaussian bumps on a coarse lattice ``scale`` mm apart, summed separably (three small
    matrix products), so it costs next to nothing whatever the volume size.
    """
    weights = []
    for ax in axes:
        lo, hi = ax[0] - scale, ax[-1] + scale
        centres = np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / scale)) + 1))
        weights.append(np.exp(-0.5 * ((ax[:, None] - centres[None]) / (0.6 * scale)) ** 2))
    coarse = rng.standard_normal(tuple(w.shape[1] for w in weights))
    field = np.einsum("ia,jb,kc,abc->ijk", *weights, coarse, optimize=True)
    field -= field.mean()
    return (field / (field.std() + 1e-8)).astype(np.float32)


def ellipsoid_sd(
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: Sequence[float],
    radii: Sequence[float],
    angle: float = 0.0,
    shear: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Approximate signed distance in mm (positive inside) to an ellipsoid.

    ``radii`` are (along Z, along the rotated Y, along the rotated X) in mm; ``angle``
    rotates the ellipse in-plane and ``shear`` moves its in-plane centre by (dy, dx) mm
    per mm of Z, for organs whose axis is oblique. A radius of ``np.inf`` makes a
    cylinder. The first-order distance (1 - s) * s / |grad s| is exact on the surface
    and stays bounded between the smallest and largest radius elsewhere.
    """
    zc, yc, xc = coords
    cz, cy, cx = center
    rz, ry, rx = radii
    dz = zc - cz
    dy = yc - (cy + shear[0] * dz)
    dx = xc - (cx + shear[1] * dz)
    c, s = np.cos(angle), np.sin(angle)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    a = dz / rz if np.isfinite(rz) else 0.0 * dz
    q = np.sqrt(a**2 + (v / ry) ** 2 + (u / rx) ** 2)
    h = np.sqrt(
        (a / rz if np.isfinite(rz) else 0.0 * dz) ** 2 + (v / ry**2) ** 2 + (u / rx**2) ** 2
    )
    rmin = min(r for r in (rz, ry, rx) if np.isfinite(r))
    scale = np.where(h > 1e-9, q / np.maximum(h, 1e-9), rmin)
    return ((1.0 - q) * scale).astype(np.float32)


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union of two signed distances (positive inside) with a fillet of about ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (a - b) / k, 0.0, 1.0)
    return b + (a - b) * h + k * h * (1.0 - h)


class Scene:
    """Volumes of ``channels`` images and one label map, painted shape by shape.

    Shapes are signed distances in mm on a box of the grid; painting composites a value
    over the image with anti-aliased coverage and writes the label where the shape
    covers the voxel centre, so a later shape hides an earlier one in both.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        channels: int = 1,
        background: float | Sequence[float] = 0.0,
    ) -> None:
        self.shape = shape
        self.spacing = spacing
        self.axes = mm_axes(shape, spacing)
        self.image = np.empty((channels, *shape), np.float32)
        self.image[:] = np.reshape(np.asarray(background, np.float32), (-1, 1, 1, 1))
        self.label = np.zeros(shape, np.uint8)
        self.aa = float(min(spacing[1:]))  # width of the coverage ramp, mm

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, ...] | None:
        """Index box of the voxels whose centres lie in [lo, hi] mm (Z, Y, X), or None."""
        out = []
        for ax, a, b in zip(self.axes, lo, hi, strict=True):
            i0, i1 = np.searchsorted(ax, a, "left"), np.searchsorted(ax, b, "right")
            if i1 <= i0:
                return None
            out.append(slice(int(i0), int(i1)))
        return tuple(out)

    def around(self, center: Sequence[float], extent: Sequence[float]) -> tuple[slice, ...] | None:
        return self.box(
            [c - e for c, e in zip(center, extent, strict=True)],
            [c + e for c, e in zip(center, extent, strict=True)],
        )

    def full(self) -> tuple[slice, ...]:
        return tuple(slice(0, n) for n in self.shape)

    def coords(self, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable mm coordinates (Z, 1, 1), (1, Y, 1), (1, 1, X) of a box."""
        z, y, x = (ax[b] for ax, b in zip(self.axes, box, strict=True))
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def coverage(self, sd: np.ndarray) -> np.ndarray:
        return np.clip(0.5 + sd / self.aa, 0.0, 1.0)

    def paint(
        self,
        box: tuple[slice, ...] | None,
        sd: np.ndarray,
        value: float | np.ndarray | Sequence[float],
        label: int | None = None,
        where: np.ndarray | None = None,
    ) -> None:
        """Composite ``value`` (scalar, per-channel sequence or array) over the box.

        ``where`` (bool or in [0, 1]) scales the coverage: it restricts the shape, or fades
        its intensity without moving its label, which covers ``sd > 0`` where ``where > 0``.
        """
        if box is None:
            return
        cover = np.broadcast_to(self.coverage(sd), self.label[box].shape)
        alpha = cover if where is None else cover * where
        value = np.asarray(value, np.float32)
        if value.ndim == 1:  # one value per channel
            value = value.reshape(-1, 1, 1, 1)
        region = self.image[(slice(None), *box)]
        region += alpha * (value - region)
        if label is not None:
            hit = cover > 0.5 if where is None else (cover > 0.5) & (where > 0)
            self.label[box][hit] = label


def tube_sd(
    scene: Scene, points: np.ndarray, radii: np.ndarray, margin: float = 0.0
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """Signed distance (mm) to a tube around the polyline ``points`` (N, 3) in mm (Z, Y, X)
    with radius ``radii`` (N,) interpolated along each segment; on the tube's box.

    Each segment is evaluated on its own small box, so a long colon costs little.
    """
    pad = float(radii.max()) + margin + 2.0 * scene.aa
    box = scene.box(points.min(axis=0) - pad, points.max(axis=0) + pad)
    if box is None:
        return None, np.zeros(0, np.float32)
    sd = np.full(scene.label[box].shape, -1e4, np.float32)
    offset = [b.start for b in box]
    for a, b, ra, rb in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True):
        r = max(ra, rb) + margin + 2.0 * scene.aa
        seg = scene.box(np.minimum(a, b) - r, np.maximum(a, b) + r)
        if seg is None:
            continue
        zc, yc, xc = scene.coords(seg)
        ab = b - a
        t = ((zc - a[0]) * ab[0] + (yc - a[1]) * ab[1] + (xc - a[2]) * ab[2]) / max(
            float(ab @ ab), 1e-9
        )
        t = np.clip(t, 0.0, 1.0)
        d = np.sqrt(
            (zc - a[0] - t * ab[0]) ** 2
            + (yc - a[1] - t * ab[1]) ** 2
            + (xc - a[2] - t * ab[2]) ** 2
        )
        local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(seg, offset, strict=True))
        np.maximum(sd[local], (ra + t * (rb - ra) - d).astype(np.float32), out=sd[local])
    return box, sd


def catmull_rom(control: np.ndarray, step: float) -> np.ndarray:
    """Points about ``step`` mm apart on a smooth curve through ``control`` (N, D).

    The first three columns are (Z, Y, X) in mm and set the spacing; further columns
    (e.g. a radius) are interpolated along.
    """
    p = np.concatenate([control[:1], control, control[-1:]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        n = max(1, int(np.ceil(np.linalg.norm(p2[:3] - p1[:3]) / step)))
        t = (np.arange(n) / n)[:, None]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(control[-1:])
    return np.concatenate(out)


#: Seeds of different cases are this far apart, so a case never depends on ``cases``.
CASE_SEED_STRIDE = 100003


def split_counts(cases: int) -> tuple[int, int, int]:
    """(train, val, test) for a 60/20/20 split with at least one case in each."""
    n_val = max(1, round(0.2 * cases))
    n_test = max(1, round(0.2 * cases))
    return cases - n_val - n_test, n_val, n_test
