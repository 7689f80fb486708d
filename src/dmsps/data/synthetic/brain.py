"""Synthetic brain-tumour MRI in the official BraTS 2020 layout, with BraTS labels.

Without BraTS access, ``dmsps import brats2020`` and the 3D pipeline still need a source
that behaves like it: four skull-stripped MRI channels (t1, t1ce, t2, flair) that are
exactly 0 outside the brain, with a margin of zeros around it (so cropping to the non-zero
region has something to remove); inside, white matter, a folded cortical ribbon, sulcal
CSF, deep grey matter, ventricles and a midline fissure; and a glioma-like tumour:

* 2 peritumoral edema, the outer region, spreading through white matter;
* 4 enhancing tumour, an irregular rim;
* 1 necrotic / non-enhancing core, inside the rim.

The tumour core (1 + 4) always lies inside the whole tumour with a margin of edema, as in
BraTS. Contrasts follow real scans (``TISSUES``): edema is bright on t2 and flair and
fades into normal tissue at its border, the rim bright on t1ce (so are choroid plexus and
cortical vessels, which are not tumour), necrosis dark on t1 and t1ce and bright on t2,
CSF bright on t2 but dark on flair, small white-matter lesions and periventricular caps
bright on t2 and flair (not tumour either). Each channel gets its own random gain
(arbitrary MRI units, 100 to 3000), a smooth multiplicative bias field (10-25 % std) and
Rician noise, so per-volume normalisation matters.

Anatomy is drawn in mm on (Z, Y, X) = (towards the head, towards posterior, towards the
patient's left), with the affine saying so, as in BraTS. The default 48 x 64 x 64 voxels
of 3 mm hold an adult-sized brain (0.75 to 1.4 l) with a whole tumour of 40 to 300 cm^3.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from dmsps.data.synthetic.shapes import (
    CASE_SEED_STRIDE,
    Scene,
    as_rng,
    check_int,
    check_seed,
    ellipsoid_sd,
    prepare_out,
    radiological_geometry,
    resolve_grid,
    smooth_field,
)
from dmsps.io.nifti import save_volume
from dmsps.progress import progress_bar

#: BraTS label values: necrotic/non-enhancing core, edema, enhancing tumour (no 3).
BRATS_LABELS = {1: "necrotic / non-enhancing tumour core", 2: "edema", 4: "enhancing tumour"}
CHANNELS = ("t1", "t1ce", "t2", "flair")
DEFAULT_SHAPE = (48, 64, 64)
#: Default field of view in mm (Z, Y, X): 48 x 64 x 64 voxels of 3 mm.
FIELD_OF_VIEW = (144.0, 192.0, 192.0)
#: Smallest field of view that holds a (slightly small) adult brain with a zero margin.
MIN_FIELD_OF_VIEW = (120.0, 160.0, 144.0)
SHAPE_LO, SHAPE_HI = (24, 24, 24), (512, 512, 512)
CASE_PREFIX = "BraTS20_Training_"
_CASE_RE = re.compile(r"^BraTS20_Training_\d{3,}$")

#: Nominal intensities (t1, t1ce, t2, flair) relative to white matter on t1; each case
#: jitters every entry by up to 7 %.
TISSUES = {
    "wm": (1.00, 1.00, 0.45, 0.55),
    "gm": (0.78, 0.80, 0.65, 0.70),
    "deep_gm": (0.84, 0.86, 0.58, 0.66),
    "csf": (0.30, 0.32, 1.40, 0.15),
    "enhancing_vessel": (0.80, 1.45, 0.90, 0.70),
    "wm_hyperintensity": (0.88, 0.90, 0.80, 0.95),
    "edema": (0.72, 0.74, 1.0, 1.1),
    "enhancing": (0.78, 1.45, 0.85, 0.95),
    "necrosis": (0.40, 0.40, 1.25, 0.80),
}


def _source_entry(path: Path) -> bool:
    return path.is_dir() and bool(_CASE_RE.match(path.name))


def make_brain_case(
    rng_or_seed: np.random.Generator | int | None,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw one synthetic brain-tumour case.

    Returns ``(channels, seg)``: ``channels`` maps t1, t1ce, t2, flair to float32 (Z, Y, X)
    volumes (0 outside the brain, positive inside), ``seg`` is uint8 with BraTS values 0,
    1, 2, 4. ``spacing`` (mm, Z Y X) defaults to ``FIELD_OF_VIEW`` divided by ``shape``.
    The same seed gives the same arrays.
    """
    rng = as_rng(rng_or_seed)
    shape, spacing = resolve_grid(
        shape, spacing, FIELD_OF_VIEW, MIN_FIELD_OF_VIEW, SHAPE_LO, SHAPE_HI, "brain"
    )
    u = rng.uniform
    sc = Scene(shape, spacing, len(CHANNELS), 0.0)
    full = sc.full()
    co = sc.coords(full)
    zz, yy, xx = co
    fov = [n * d for n, d in zip(shape, spacing, strict=True)]
    warps = [smooth_field(rng, sc.axes, 40.0) for _ in range(3)]
    gyri = smooth_field(rng, sc.axes, 9.0)
    sulci = smooth_field(rng, sc.axes, 7.0)
    tissue = {k: np.asarray(v) * rng.uniform(0.93, 1.07, len(CHANNELS)) for k, v in TISSUES.items()}

    def warp(amp: float, box: tuple[slice, ...] = full) -> np.ndarray:
        w = rng.normal(size=3)
        w /= np.linalg.norm(w) + 1e-8
        return amp * sum(wk * f[box] for wk, f in zip(w, warps, strict=True))

    def modulate(value: np.ndarray, field: np.ndarray, amount: float) -> np.ndarray:
        """Per-channel values times a smooth heterogeneity, shaped (C, Z, Y, X)."""
        return value.reshape(-1, 1, 1, 1) * (1.0 + amount * np.clip(field, -2.0, 2.0))[None]

    def blob(center, radii, value, angle: float = 0.0, shear=(0.0, 0.0), inside=None) -> None:
        """Paint an ellipsoid on its own box; ``inside`` (center, radii, angle, shear) of
        another ellipsoid clips it."""
        reach = max(radii) * (1.0 + max(abs(shear[0]), abs(shear[1]))) + 2.0 * sc.aa
        box = sc.around(center, (radii[0] + 2.0 * sc.aa, reach, reach))
        if box is None:
            return
        sd = ellipsoid_sd(sc.coords(box), center, radii, angle, shear)
        if inside is not None:
            sd = np.minimum(sd, ellipsoid_sd(sc.coords(box), *inside))
        sc.paint(box, sd, value)

    def random_point(candidates: np.ndarray) -> tuple[float, ...]:
        k = np.unravel_index(int(rng.choice(candidates)), shape)
        return tuple(float(ax[i]) for ax, i in zip(sc.axes, k, strict=True))

    # Brain: an egg-shaped ellipsoid (narrower in front, flatter below), gently deformed.
    radii_nominal = np.array([53.0, 77.0, 63.0])
    extent = radii_nominal * np.array([1.05, 1.05, 1.14])  # jitter, wider at the back
    s_max = min((f / 2.0 - 10.0) / r for f, r in zip(fov, extent, strict=True))
    s = min(u(0.92, 1.06), s_max)
    rz, ry, rx = radii_nominal * s * rng.uniform(0.95, 1.05, 3)
    cz, cy, cx = u(-3.0, 3.0), u(-4.0, 4.0), u(-3.0, 3.0)
    dz, dy = zz - cz, yy - cy
    egg = (
        cz + dz * np.where(dz < 0.0, 1.12, 1.0),
        yy,
        cx + (xx - cx) / (1.0 + 0.08 * np.clip(dy / ry, -1.0, 1.0)),
    )
    depth = ellipsoid_sd(egg, (cz, cy, cx), (rz, ry, rx)) + warp(2.0)
    brain = depth > 0.0
    sc.paint(full, depth, modulate(tissue["wm"], gyri, 0.03))

    # Cortex: a ribbon of varying depth (folds), sulcal CSF at the surface, the fissure.
    gm_depth = np.clip(5.5 + 3.0 * gyri, 2.0, 11.0)
    sc.paint(full, gm_depth - depth, tissue["gm"])
    csf_depth = np.clip(0.6 + 2.0 * sulci, 0.0, 4.0)
    sc.paint(full, csf_depth - depth, tissue["csf"])
    fissure = np.minimum(np.minimum(1.3 - np.abs(xx - cx), 30.0 - depth), zz - (cz - 20.0))
    sc.paint(full, fissure, tissue["csf"])

    # Deep grey matter, lateral ventricles with choroid plexus (which enhances) and
    # flair-bright caps, third ventricle.
    vent = u(0.7, 1.4)
    for side in (-1.0, 1.0):
        c = (cz + u(-2.0, 4.0) * s, cy + u(-4.0, 8.0) * s, cx + side * u(15.0, 20.0) * s)
        blob(c, (u(10.0, 14.0) * s, u(13.0, 17.0) * s, u(7.0, 10.0) * s), tissue["deep_gm"])
        c = (cz + u(10.0, 15.0) * s, cy + u(-4.0, 4.0) * s, cx + side * u(6.0, 9.0) * s)
        r = (u(6.0, 9.0) * s * vent, u(26.0, 34.0) * s, u(4.0, 6.0) * s * vent)
        ventricle = (c, r, side * u(0.0, 0.15), (0.25, side * 0.15))
        for end in (-1.0, 1.0):
            c_cap = (c[0], c[1] + end * 0.95 * r[1], c[2])
            blob(c_cap, tuple(rng.uniform(4.0, 8.0, 3)), tissue["wm_hyperintensity"])
        blob(*ventricle[:2], tissue["csf"], *ventricle[2:])
        c_cp = (c[0] - 2.0 * s, c[1] + 0.6 * r[1], c[2])
        blob(c_cp, (2.5 * s, 5.0 * s, 2.0 * s), tissue["enhancing_vessel"], inside=ventricle)
    c = (cz + u(0.0, 4.0) * s, cy + u(-2.0, 4.0) * s, cx)
    blob(c, (9.0 * s, 12.0 * s, 1.5 * vent), tissue["csf"])
    # Cortical vessels, veins and dural sinuses at the surface, bright after contrast.
    shallow = np.flatnonzero(((depth > 1.0) & (depth < 5.0)).ravel())
    for _ in range(int(rng.integers(8, 20)) if shallow.size else 0):
        r = u(1.5, 3.5)
        blob(random_point(shallow), (r, r, r), tissue["enhancing_vessel"])
    veins = np.minimum(2.5 - depth, (sulci - u(0.6, 1.0)) * 3.0)
    sc.paint(full, veins, tissue["enhancing_vessel"])
    # Small-vessel white-matter lesions: bright on t2 and flair, not tumour.
    deep = np.flatnonzero((depth > 15.0).ravel())
    for _ in range(int(rng.integers(1, 9)) if deep.size else 0):
        blob(random_point(deep), tuple(rng.uniform(2.0, 7.0, 3)), tissue["wm_hyperintensity"])

    # Tumour: core (enhancing rim around necrosis) well inside the brain, edema around it.
    side = rng.choice([-1.0, 1.0])
    off = np.array([u(-0.25, 0.4) * rz, u(-0.55, 0.55) * ry, side * u(0.15, 0.5) * rx])
    radius = u(12.0, 22.0) * s
    rim = max(u(4.0, 7.0), 1.3 * max(spacing))
    for _ in range(20):  # pull the centre inwards until the core fits with room to spare
        k = tuple(
            int(np.clip(np.searchsorted(ax, c0 + o), 0, n - 1))
            for ax, c0, o, n in zip(sc.axes, (cz, cy, cx), off, shape, strict=True)
        )
        if depth[k] >= radius * 1.25 + 12.0:
            break
        off *= 0.85
    radius = float(np.clip(depth[k] / 1.25 - 10.0, rim + 6.0, radius))
    center = (cz + off[0], cy + off[1], cx + off[2])
    core_r = radius * rng.uniform(0.8, 1.2, 3)
    core_r = np.maximum(core_r, rim + 7.0)
    e_center = tuple(c0 + u(-6.0, 6.0) for c0 in center)
    e_radii = core_r + rng.uniform(5.0, 22.0, 3) * s
    reach = float(max(e_radii.max() + 6.0, core_r.max() + 0.12 * radius * 4.0) + 30.0)
    box = sc.around(center, (reach, reach, reach))
    tco, tdepth = sc.coords(box), depth[box]
    core = ellipsoid_sd(tco, center, tuple(core_r), angle=u(0.0, np.pi))
    margin = max(4.0, 2.0 * max(spacing))
    core = np.minimum(core + warp(0.12 * radius, box), tdepth - margin - max(spacing))
    necrosis = core - np.maximum(rim + warp(0.3 * rim, box), 0.6 * rim)
    dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(tco, center, strict=True)))
    ball = 1.5 * max(spacing) - dist
    necrosis = np.maximum(necrosis, np.minimum(ball, core - 0.6 * rim))  # never vanishes
    edema = ellipsoid_sd(tco, e_center, tuple(e_radii), angle=u(0.0, np.pi))
    edema = edema + warp(6.0, box)
    edema = np.minimum(edema, tdepth - 0.7 * gm_depth[box])  # mostly spares the cortex
    edema = np.maximum(edema, core + margin)
    hetero = [smooth_field(rng, sc.axes, 15.0)[box] for _ in range(2)]
    # Edema fades into normal tissue towards its border, where annotators disagree too.
    fade = 0.25 + 0.75 * np.clip(edema / u(4.0, 12.0), 0.0, 1.0)
    sc.paint(box, edema, modulate(tissue["edema"], hetero[0], 0.15), 2, where=fade)
    sc.paint(box, core, modulate(tissue["enhancing"], hetero[1], 0.12), 4)
    sc.paint(box, necrosis, modulate(tissue["necrosis"], gyri[box], 0.1), 1)

    # Acquisition per channel: partial volume, gain, bias field, Rician noise; skull strip.
    seg = np.where(brain, sc.label, 0).astype(np.uint8)
    channels = {}
    for i, name in enumerate(CHANNELS):
        img = ndi.gaussian_filter(sc.image[i], 0.5)
        gain = float(np.exp(u(np.log(100.0), np.log(3000.0))))
        bias = np.exp(u(0.1, 0.25) * smooth_field(rng, sc.axes, 100.0))
        img = img * bias * gain
        sigma = u(0.02, 0.045) * gain
        noisy = np.hypot(
            img + sigma * rng.standard_normal(shape, dtype=np.float32),
            sigma * rng.standard_normal(shape, dtype=np.float32),
        )
        channels[name] = np.where(brain, noisy, 0.0).astype(np.float32)
    return channels, seg


def case_name(index: int) -> str:
    """BraTS 2020 name of case ``index`` (from 0): BraTS20_Training_001, ..."""
    return f"{CASE_PREFIX}{index + 1:03d}"


def make_brain_source(
    out: str | Path,
    cases: int = 30,
    seed: int = 0,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic BraTS-2020-like source dataset to ``out``; returns ``out``.

    Layout as in the BraTS 2020 training release: one folder per case,
    ``BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz``. There are
    no splits (the importer makes them). Case ``i`` (from 0) is drawn from seed
    ``seed * 100003 + i``, so a case is the same whatever ``cases`` is. Import it with
    ``dmsps import brats2020 OUT DATA``.
    """
    cases = check_int(cases, "--cases", 1, 999)
    seed = check_seed(seed)
    shape, spacing = resolve_grid(
        shape, spacing, FIELD_OF_VIEW, MIN_FIELD_OF_VIEW, SHAPE_LO, SHAPE_HI, "brain"
    )
    out = Path(out)
    prepare_out(out, overwrite, _source_entry)
    geometry = radiological_geometry(shape, spacing)
    for i in progress_bar(range(cases), desc="synth brain", unit="case", disable=not progress):
        channels, seg = make_brain_case(
            np.random.default_rng(seed * CASE_SEED_STRIDE + i), shape, spacing
        )
        name = case_name(i)
        for channel, image in channels.items():
            save_volume(out / name / f"{name}_{channel}.nii.gz", image, geometry, np.float32)
        save_volume(out / name / f"{name}_seg.nii.gz", seg, geometry, np.uint8)
    return out
