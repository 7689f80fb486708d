"""Synthetic short-axis cardiac MRI with dense labels and simulated scribbles.

The demo, the tests and anyone without ACDC access need data that behaves like cine MRI:
bright blood pools, a dark-grey myocardium ring, an RV crescent, and surroundings that
share those intensities (bright vessels and fat, dark muscle and liver), so a model has to
use shape and context rather than a threshold. Everything is drawn from smooth analytic
shapes on the (Z, Y, X) grid with numpy broadcasting, so 40 cases take a few seconds.

Labels follow ACDC: 0 background, 1 RV, 2 myocardium, 3 LV (papillary muscles count as
LV). Slice 0 is the base, the last slice the apex: the heart shrinks towards the apex and
the RV disappears on apical slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from dmsps.data.layout import LAYOUT_ENTRIES, DatasetWriter, cardiac_meta
from dmsps.data.simulation import simulate_scribble
from dmsps.data.synthetic.shapes import CASE_SEED_STRIDE, prepare_out, split_counts
from dmsps.errors import DmspsError
from dmsps.io.nifti import Geometry
from dmsps.progress import progress_bar

NUM_CLASSES = 4
#: In-plane spacing at 96 px; other sizes rescale it so the anatomy keeps its size in mm.
BASE_SPACING = (8.0, 1.5, 1.5)


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _ramp(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (positive inside)."""
    return np.clip(0.5 + signed_distance, 0.0, 1.0)


def _paint(img: np.ndarray, alpha: np.ndarray, value: np.ndarray | float) -> None:
    """Composite ``value`` over ``img`` with coverage ``alpha``, in place."""
    img += alpha * (value - img)


def _harmonics(rng: np.random.Generator, amplitude: float, kmax: int = 4) -> np.ndarray:
    """Random Fourier coefficients (k, cos/sin) for a smooth closed-contour perturbation."""
    k = np.arange(1, kmax + 1)[:, None]
    return rng.normal(0.0, amplitude, (kmax, 2)) / k


def _perturb(psi: np.ndarray, base: np.ndarray, delta: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Low-frequency radial perturbation of a contour, drifting smoothly base to apex."""
    out = np.zeros_like(psi)
    coef = base[None] + frac.reshape(-1, 1, 1) * delta[None]  # (Z, K, 2)
    for k in range(base.shape[0]):
        a = coef[:, k, 0].reshape(-1, 1, 1)
        b = coef[:, k, 1].reshape(-1, 1, 1)
        out += a * np.cos((k + 1) * psi) + b * np.sin((k + 1) * psi)
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Unit-variance noise smoothed in-plane: tissue texture without slice-to-slice blur."""
    field = ndi.gaussian_filter(rng.standard_normal(shape), (0, sigma, sigma), mode="wrap")
    return field / (field.std() + 1e-8)


def _ellipsoid(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: tuple[float, float, float],
    radii: tuple[float, float, float],
    angle: float,
) -> np.ndarray:
    """Soft coverage of an ellipsoid (radii in slices, px, px) rotated in-plane."""
    zz, yy, xx = grid
    dy, dx = yy - center[1], xx - center[2]
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    q = np.sqrt(((zz - center[0]) / radii[0]) ** 2 + (v / radii[1]) ** 2 + (u / radii[2]) ** 2)
    return _ramp((1.0 - q) * min(radii[1], radii[2]))


def _heart(
    rng: np.random.Generator, grid: tuple[np.ndarray, ...], size: int, slices: int
) -> dict[str, np.ndarray]:
    """Signed distances (px, positive inside) of LV, epicardium, RV and RV wall per voxel.

    Contours are radii in polar coordinates around the LV centre (psi = 0 points at the
    RV), each perturbed by a few random low-frequency harmonics.
    """
    _, yy, xx = grid
    s = size / 96.0
    frac = np.linspace(0.0, 1.0, slices) if slices > 1 else np.zeros(1)
    fz = frac.reshape(-1, 1, 1)

    center = size / 2.0 + rng.uniform(-0.06, 0.06, 2) * size
    drift = rng.normal(0.0, 0.5 * s, 2)  # the long axis is never exactly through-plane
    cy = center[0] + drift[0] * (fz * (slices - 1) - (slices - 1) / 2)
    cx = center[1] + drift[1] * (fz * (slices - 1) - (slices - 1) / 2)
    # RV sits to the image left and slightly up (anterior), as in ACDC.
    theta = np.deg2rad(-160.0 + rng.uniform(-30.0, 30.0))
    squash = rng.uniform(1.0, 1.15)

    dy, dx = yy - cy, xx - cx
    u = np.cos(theta) * dx + np.sin(theta) * dy
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) * squash
    rho = np.hypot(u, v)
    psi = np.arctan2(v, u)

    r_endo0 = rng.uniform(10.5, 13.5) * s
    thick0 = rng.uniform(4.2, 5.5) * s
    r_endo = r_endo0 * (1.0 - rng.uniform(0.45, 0.6) * fz**1.5)
    r_endo = np.maximum(r_endo, 3.5 * s)
    thick = thick0 * (1.0 + 0.1 * fz)

    endo = r_endo * (1.0 + _perturb(psi, _harmonics(rng, 0.05), _harmonics(rng, 0.03), frac))
    wall = thick * (1.0 + _perturb(psi, _harmonics(rng, 0.12), _harmonics(rng, 0.06), frac))
    epi = endo + np.maximum(wall, max(2.5 * s, 2.0))

    rv_w0 = rng.uniform(0.8, 1.15) * (r_endo0 + thick0)
    rv_w = rv_w0 * np.clip(1.0 - rng.uniform(0.9, 1.2) * fz**1.3, 0.0, None)
    rv_w = np.where(rv_w < 3.0 * s, 0.0, rv_w)  # too thin to be a structure: no RV
    span = rng.uniform(1.2, 1.6) * (1.0 - 0.25 * fz)
    shift = rng.uniform(-0.15, 0.15)  # the crescent is not centred exactly on psi = 0
    dpsi = np.angle(np.exp(1j * (psi - shift)))
    profile = np.clip(1.0 - (dpsi / span) ** 2, 0.0, None) ** 0.4
    rv_pert = 1.0 + _perturb(psi, _harmonics(rng, 0.08), _harmonics(rng, 0.04), frac)
    rv_outer = epi + rv_w * profile * rv_pert
    rv_wall = rv_outer + np.where(rv_w * profile > 0.5, rng.uniform(1.2, 2.0) * s, 0.0)

    return {
        "lv": endo - rho,
        "epi": epi - rho,
        "rv": np.minimum(rv_outer - rho, rho - epi),
        "rv_wall": np.minimum(rv_wall - rho, rho - epi + 1.0),
        "rho": rho,
        "psi": psi,
        "endo_r": endo,
        "frac": np.broadcast_to(fz, rho.shape),
    }


def _labels(heart: dict[str, np.ndarray], size: int) -> np.ndarray:
    label = np.zeros(heart["lv"].shape, dtype=np.uint8)
    label[heart["rv"] > 0] = 1
    label[heart["epi"] > 0] = 2
    label[heart["lv"] > 0] = 3
    # An RV of a few pixels is partial volume, not a structure an annotator would draw.
    min_rv = max(10.0, 15.0 * (size / 96.0) ** 2)
    for z in range(label.shape[0]):
        if 0 < (label[z] == 1).sum() < min_rv:
            label[z][label[z] == 1] = 0
    return label


def _place_blob(
    rng: np.random.Generator,
    away: np.ndarray,
    inside: np.ndarray,
    radius: float,
    near: float | None = None,
) -> tuple[float, float] | None:
    """A random in-plane centre at least ``radius`` + margin from the heart, inside the body.

    ``near`` also keeps it within that distance of the heart (for vessels beside it).
    """
    ok = inside & (away > radius + 2.0)
    if near is not None:
        ok &= away < radius + near
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return None
    y, x = np.unravel_index(int(rng.choice(idx)), away.shape)
    return float(y), float(x)


def make_cardiac_case(
    rng_or_seed: np.random.Generator | int | None, size: int = 96, slices: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic short-axis stack.

    Returns ``(image, label)``: image float32 (slices, size, size) in [0, 1], label uint8
    with 0 background, 1 RV, 2 myocardium, 3 LV. The same seed gives the same arrays.
    """
    rng = _as_rng(rng_or_seed)
    shape = (slices, size, size)
    zz, yy, xx = np.meshgrid(
        np.arange(slices, dtype=np.float64),
        np.arange(size, dtype=np.float64),
        np.arange(size, dtype=np.float64),
        indexing="ij",
    )
    grid = (zz, yy, xx)
    s = size / 96.0

    heart = _heart(rng, grid, size, slices)
    label = _labels(heart, size)
    heart_any = (label > 0).any(axis=0) | (heart["rv_wall"] > 0).any(axis=0)
    away = ndi.distance_transform_edt(~heart_any)

    # Case-level intensities (before bias field and noise), cine-MRI-like.
    blood = rng.uniform(0.75, 0.95)
    myo = rng.uniform(0.15, 0.25)
    tissue = rng.uniform(0.32, 0.45)

    # Body: textured soft tissue inside an elliptical outline, air outside.
    img = np.zeros(shape)
    body_c = (
        (slices - 1) / 2,
        size / 2 + rng.uniform(-0.05, 0.05) * size,
        size / 2 + rng.uniform(-0.05, 0.05) * size,
    )
    body_r = (1e6, rng.uniform(0.42, 0.55) * size, rng.uniform(0.55, 0.7) * size)
    body = _ellipsoid(grid, body_c, body_r, rng.uniform(-0.15, 0.15))
    texture = _smooth_noise(rng, shape, rng.uniform(1.5, 3.0) * s)
    _paint(img, body, tissue * (1.0 + 0.18 * texture))
    # Subcutaneous fat (bright, like blood) and chest-wall muscle (dark, like myocardium).
    fat_w, muscle_w = rng.uniform(2.0, 4.0) * s, rng.uniform(3.0, 6.0) * s
    inner1 = _ellipsoid(grid, body_c, (1e6, body_r[1] - fat_w, body_r[2] - fat_w), 0.0)
    inner2 = _ellipsoid(
        grid,
        body_c,
        (1e6, body_r[1] - fat_w - muscle_w, body_r[2] - fat_w - muscle_w),
        0.0,
    )
    _paint(img, body * (1.0 - inner1), rng.uniform(0.6, 0.85))
    _paint(img, inner1 * (1.0 - inner2), myo * rng.uniform(0.85, 1.2))
    inside = (inner2 > 0.5).all(axis=0)

    # Lungs: large dark regions on both sides, partly behind the heart.
    for side in (-1.0, 1.0):
        c = (
            rng.uniform(-0.2, 0.4) * slices,
            size / 2 + rng.uniform(0.0, 0.15) * size,
            size / 2 + side * rng.uniform(0.3, 0.42) * size,
        )
        r = (
            rng.uniform(0.8, 1.3) * slices,
            rng.uniform(0.22, 0.32) * size,
            rng.uniform(0.1, 0.16) * size,
        )
        _paint(img, _ellipsoid(grid, c, r, rng.uniform(-0.4, 0.4)) * inner2, rng.uniform(0.03, 0.1))
    # Liver: a large grey region below-left, growing towards the apex.
    c = (
        slices * rng.uniform(0.9, 1.4),
        size * rng.uniform(0.8, 0.95),
        size * rng.uniform(0.25, 0.45),
    )
    r = (
        slices * rng.uniform(0.6, 0.9),
        size * rng.uniform(0.2, 0.3),
        size * rng.uniform(0.25, 0.35),
    )
    liver = _ellipsoid(grid, c, r, rng.uniform(-0.5, 0.5))
    _paint(img, liver * inner2, rng.uniform(0.3, 0.45) * (1.0 + 0.1 * texture))

    # Organ-like blobs with any intensity, some as bright as blood, some as dark as muscle.
    for i in range(int(rng.integers(4, 8))):
        radius = rng.uniform(2.5, 8.0) * s
        yx = _place_blob(rng, away, inside, radius)
        if yx is None:
            continue
        c = (rng.uniform(-0.2, 1.2) * slices, *yx)
        r = (rng.uniform(0.3, 1.0) * slices, radius, radius * rng.uniform(0.6, 1.4))
        value = blood * rng.uniform(0.85, 1.05) if i % 3 == 0 else rng.uniform(0.05, 0.9)
        _paint(img, _ellipsoid(grid, c, r, rng.uniform(0, np.pi)), value)
    # Descending aorta and other vessels beside the heart: bright discs, blood intensity.
    for _ in range(int(rng.integers(1, 3))):
        radius = rng.uniform(3.0, 5.0) * s
        yx = _place_blob(rng, away - 1.0 * s, inside, radius, near=10.0 * s)
        if yx is not None:
            c = ((slices - 1) / 2, *yx)
            r = (1e6, radius, radius * rng.uniform(0.9, 1.1))
            _paint(img, _ellipsoid(grid, c, r, 0.0), blood * rng.uniform(0.9, 1.05))

    # Heart: RV free wall, myocardium, blood pools, papillary muscles.
    flow = 1.0 + 0.05 * _smooth_noise(rng, shape, 2.0 * s)  # blood-flow inhomogeneity
    _paint(img, _ramp(heart["rv_wall"]), myo * rng.uniform(0.9, 1.3))
    _paint(img, _ramp(heart["epi"]), myo * (1.0 + 0.08 * texture))
    _paint(img, _ramp(heart["lv"]), blood * flow)
    _paint(img, _ramp(heart["rv"]) * (label == 1), blood * rng.uniform(0.9, 1.0) * flow)
    for _ in range(int(rng.integers(0, 3))):
        angle = np.pi + rng.uniform(-0.9, 0.9)  # opposite the RV, near the free wall
        r_pap = rng.uniform(1.2, 2.0) * s
        dist_c = heart["endo_r"] - r_pap - 1.0
        d = np.hypot(
            heart["rho"] * np.cos(heart["psi"]) - dist_c * np.cos(angle),
            heart["rho"] * np.sin(heart["psi"]) - dist_c * np.sin(angle),
        )
        pap = _ramp(r_pap - d) * (heart["frac"] < 0.8) * (label == 3)
        _paint(img, pap, myo * rng.uniform(1.0, 1.4))

    # Acquisition: partial-volume blur, smooth bias field, Rician noise.
    img = ndi.gaussian_filter(img, (0, rng.uniform(0.4, 0.7) * s, rng.uniform(0.4, 0.7) * s))
    ny = 2.0 * yy / (size - 1) - 1.0
    nx = 2.0 * xx / (size - 1) - 1.0
    nz = 2.0 * zz / max(slices - 1, 1) - 1.0
    coef = rng.normal(0.0, 0.15, 6)
    img *= np.exp(
        coef[0] * nx
        + coef[1] * ny
        + coef[2] * nx**2
        + coef[3] * ny**2
        + coef[4] * nx * ny
        + 0.5 * coef[5] * nz
    )
    sigma = rng.uniform(0.02, 0.045) * blood
    img = np.hypot(img + sigma * rng.standard_normal(shape), sigma * rng.standard_normal(shape))
    img = np.clip(img / np.percentile(img, 99.5), 0.0, 1.0)
    return img.astype(np.float32), label


def make_cardiac_dataset(
    out: str | Path,
    cases: int = 40,
    size: int = 96,
    slices: int = 10,
    seed: int = 0,
    density: float = 1.0,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic cardiac dataset (our layout, with splits.json) to ``out``.

    Case ``i`` is drawn from seed ``seed * 100003 + i``, so a case is the same whatever
    ``cases`` is. Train and val cases get scribbles; test cases go to imagesTs/labelsTs.
    """
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 3:
        raise DmspsError(f"--cases must be an integer of at least 3 (train/val/test), got {cases}")
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 512:
        raise DmspsError(f"--size must be an integer in 32..512, got {size}")
    if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= 64:
        raise DmspsError(f"--slices must be an integer in 1..64, got {slices}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DmspsError(f"--seed must be a non-negative integer, got {seed}")
    if not 0.0 < density <= 1.0:
        raise DmspsError(f"--density must be in (0, 1], got {density}")
    out = Path(out)
    prepare_out(out, overwrite, lambda p: p.name in LAYOUT_ENTRIES)

    n_train, n_val, _ = split_counts(cases)
    width = max(3, len(str(cases - 1)))
    names = [f"case_{i:0{width}d}" for i in range(cases)]
    splits = {
        "train": names[:n_train],
        "val": names[n_train : n_train + n_val],
        "test": names[n_train + n_val :],
    }
    test = set(splits["test"])
    spacing = (BASE_SPACING[0], BASE_SPACING[1] * 96 / size, BASE_SPACING[2] * 96 / size)
    geometry = Geometry.from_spacing((slices, size, size), spacing)
    meta = cardiac_meta("synthetic_cardiac")
    meta.extra["description"] = (
        f"Synthetic short-axis cardiac MRI from `dmsps synth cardiac` (seed {seed}, "
        f"scribble density {density:g})"
    )
    writer = DatasetWriter(out, meta)
    for i, name in enumerate(progress_bar(names, desc="synth", unit="case", disable=not progress)):
        rng = np.random.default_rng(seed * CASE_SEED_STRIDE + i)
        image, label = make_cardiac_case(rng, size, slices)
        if name in test:
            writer.write_case(name, image, geometry, label=label, test=True)
        else:
            scribble = simulate_scribble(label, NUM_CLASSES, density, rng=rng)
            writer.write_case(name, image, geometry, label=label, scribble=scribble)
    writer.finish(splits)
    return out
