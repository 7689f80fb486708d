"""Synthetic abdominal CT in the official WORD layout, with dense WORD labels.

Without access to WORD, ``dmsps import word`` and the 3D pipeline still need a source that
looks like it: an axial CT stack in Hounsfield units, air around an elliptical body,
subcutaneous fat, a muscle wall with ribs, a vertebral column with discs, back muscles
and psoas, and the upper-abdominal organs where they sit in a supine patient. Unenhanced
HU: air -1000, lung -850, fat -100, liver 52-66, spleen 2-12 below the liver, muscle within
12 of it, blood 8-18 below it, kidneys 25-40, pancreas 32-48, bowel wall 30-50, bile 0-20,
bone 150-700; plus smooth texture and 6-18 HU of noise. The organs share their intensities
with each other and with muscle, vessels and bowel, so a threshold cannot segment them: a
model has to use shape and position.

Anatomy is drawn in mm (signed distances of ellipsoids and tubes, deformed by smooth
random fields), so organ sizes and HD95 in mm are realistic at any resolution. Array
axes are (Z, Y, X) = (towards the head, towards posterior, towards the patient's left),
and the NIfTI affine says so (:func:`dmsps.data.synthetic.shapes.radiological_geometry`): the liver
lies at small X, the spleen at large X, the spine at large Y.

Labels follow WORD: 1 liver, 2 spleen, 3 left kidney, 4 right kidney, 5 stomach,
6 gallbladder, 7 esophagus, 8 pancreas, 9 duodenum, 10 colon, 11 intestine. The DMSPS
paper keeps seven of them (1-6 and 8); 7, 9, 10 and 11 give a label mapping something
to remove. Structures without a WORD class (vessels, bone, muscle, fat, lung) are 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from dmsps.data.importers.word import WORD_LABELS
from dmsps.data.synthetic.shapes import (
    CASE_SEED_STRIDE,
    Scene,
    as_rng,
    catmull_rom,
    check_int,
    check_seed,
    ellipsoid_sd,
    prepare_out,
    radiological_geometry,
    resolve_grid,
    smooth_field,
    smooth_union,
    split_counts,
    tube_sd,
)
from dmsps.errors import DmspsError
from dmsps.io.nifti import save_volume
from dmsps.progress import progress_bar

#: The structures drawn here, by their WORD label value (WORD's table: dmsps.data.importers.word).
DRAWN_LABELS = {
    WORD_LABELS[name]: name
    for name in (
        "liver",
        "spleen",
        "kidney_left",
        "kidney_right",
        "stomach",
        "gallbladder",
        "esophagus",
        "pancreas",
        "duodenum",
        "colon",
        "intestine",
    )
}
DEFAULT_SHAPE = (40, 96, 96)
#: Default field of view in mm (Z, Y, X): 40 x 96 x 96 voxels of 5 x 3.5 x 3.5 mm cover
#: an adult abdomen from the lung bases to below the kidneys.
FIELD_OF_VIEW = (200.0, 336.0, 336.0)
#: Smallest field of view that holds every labelled structure.
MIN_FIELD_OF_VIEW = (160.0, 280.0, 280.0)
SHAPE_LO, SHAPE_HI = (8, 32, 32), (512, 1024, 1024)
SPLIT_FOLDERS = (("imagesTr", "labelsTr"), ("imagesVal", "labelsVal"), ("imagesTs", "labelsTs"))
AIR = -1000.0

#: HU added to the unenhanced values by phase. ``venous``: portal-venous contrast CT with
#: water as oral contrast, as most abdominal CT is acquired: liver ~110 HU, spleen a little
#: brighter, kidneys nephrographic (~160-190), pancreas ~90, vessels ~170, enhancing
#: bowel and stomach walls, a water-filled stomach (no gas). Organs differ more than
#: unenhanced; the 3D demo uses it (``dmsps demo --phase``), ``dmsps synth`` defaults to
#: the harder unenhanced CT (docs/3d.md).
PHASES: dict[str, dict[str, float]] = {
    "unenhanced": dict.fromkeys(
        ("liver", "spleen", "muscle", "blood", "kidney", "pancreas", "wall"), 0.0
    )
    | {"gas": 1.0},
    "venous": {
        "liver": 50.0,
        "spleen": 65.0,
        "muscle": 10.0,
        "blood": 130.0,
        "kidney": 140.0,
        "pancreas": 50.0,
        "wall": 60.0,
        "gas": 0.0,
    },
}


def _source_entry(path: Path) -> bool:
    return path.is_dir() and any(path.name in pair for pair in SPLIT_FOLDERS)


class _Abdomen:
    """One patient: shared random state, body frame and helpers; one method per structure.

    Coordinates are mm on the scene's axes: Z towards the head, Y towards posterior, X
    towards the patient's left. ``s`` scales the whole anatomy (patient size).
    """

    def __init__(self, rng: np.random.Generator, shape, spacing, phase: str = "unenhanced") -> None:
        self.rng = rng
        # Added to the unenhanced HU after every draw, so both phases use the same random
        # numbers: an unenhanced case is the same whatever phases exist.
        self.enh = PHASES[phase]
        self.sc = sc = Scene(shape, spacing, 1, AIR)
        u = rng.uniform
        self.warps = [smooth_field(rng, sc.axes, 45.0) for _ in range(3)]
        tex = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.4, 0.9, 0.9))
        self.tex = tex / (tex.std() + 1e-8)
        self.lumps = smooth_field(rng, sc.axes, 12.0)
        fov = [n * d for n, d in zip(shape, spacing, strict=True)]
        # Patient: position in the field of view, size, level of the anatomy along Z.
        self.cy, self.cx = u(-6.0, 6.0), u(-6.0, 6.0)
        a0, b0 = 145.0 * u(0.95, 1.05), 100.0 * u(0.92, 1.08)
        s_max = min((fov[2] / 2 - 18.0) / a0, (fov[1] / 2 - 18.0) / b0)
        self.s = s = min(u(0.92, 1.06), s_max)
        self.zs = u(-8.0, 8.0)
        self.a_body, self.b_ant = a0 * s, b0 * s
        self.b_post = self.b_ant * u(0.85, 0.95)  # the back is flatter than the belly
        self.t_fat, self.t_mus = u(8.0, 24.0) * s, u(8.0, 13.0) * s
        self.a_cav = self.a_body - self.t_fat - self.t_mus
        self.b_cav = self.b_post - self.t_fat - self.t_mus
        # Spine: everything behind the peritoneum hangs off the vertebral bodies.
        self.vx = self.cx + u(-4.0, 4.0)
        self.vy = self.cy + self.b_post - 0.6 * self.t_fat - u(52.0, 58.0) * s
        self.front = self.vy - 16.0 * s  # anterior surface of the vertebral bodies
        # Unenhanced soft tissue: the liver a little brighter than the spleen, muscle and
        # blood, but never by much, so no window separates them.
        self.liver_hu = u(52.0, 66.0)
        self.spleen_hu = self.liver_hu - u(2.0, 12.0)
        self.muscle_hu = self.liver_hu - u(-4.0, 12.0)
        self.blood_hu = self.liver_hu - u(8.0, 18.0)
        self.spleen_hu += self.enh["spleen"]
        self.muscle_hu += self.enh["muscle"]
        self.blood_hu += self.enh["blood"]
        self.liver_hu += self.enh["liver"]

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def warp(self, box: tuple[slice, ...], amp: float) -> np.ndarray:
        """A fresh mix of the smooth deformation fields, ``amp`` mm std, on a box."""
        w = self.rng.normal(size=3)
        w /= np.linalg.norm(w) + 1e-8
        return amp * sum(wk * f[box] for wk, f in zip(w, self.warps, strict=True))

    def texture(self, box: tuple[slice, ...], fine: float, coarse: float = 0.0) -> np.ndarray:
        """Voxel-scale noise (``fine`` HU std) plus cm-scale lumps (``coarse`` HU std)."""
        return fine * self.tex[box] + coarse * self.lumps[box]

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        self.body()
        self.lungs()
        self.ribs()
        self.spine()
        self.spleen()
        self.liver()
        self.stomach()  # and the esophagus
        self.bowel_loops()
        self.colon()
        self.duodenum_and_pancreas()
        self.kidneys()
        self.vessels()
        self.gallbladder()
        return self.acquire()

    def body(self) -> None:
        sc, u = self.sc, self.u
        full = sc.full()
        co = sc.coords(full)
        center = (0.0, self.cy, self.cx)
        body = np.where(
            co[1] > self.cy,
            ellipsoid_sd(co, center, (np.inf, self.b_post, self.a_body)),
            ellipsoid_sd(co, center, (np.inf, self.b_ant, self.a_body)),
        ) + self.warp(full, 3.0)
        sc.paint(full, body, u(-115.0, -85.0) + self.texture(full, 8.0, 4.0))
        self.fat_depth = self.t_fat * (1.0 + 0.25 * self.warps[0])
        sc.paint(full, body - self.fat_depth, self.muscle_hu + self.texture(full, 4.0, 3.0))
        self.cav = body - self.fat_depth - self.t_mus  # inside the muscle wall
        sc.paint(full, self.cav, u(-110.0, -80.0) + self.texture(full, 10.0, 12.0))
        self.body_sd = body

    def lungs(self) -> None:
        """Lung bases behind and beside the liver dome and the spleen."""
        sc, u, s = self.sc, self.u, self.s
        for side in (-1.0, 1.0):
            c = (
                self.zs + u(125.0, 150.0) * s,
                self.cy + u(25.0, 45.0) * s,
                self.cx + side * u(55.0, 75.0) * s,
            )
            r = (75.0 * s * u(0.9, 1.1), 55.0 * s * u(0.9, 1.1), 55.0 * s * u(0.9, 1.1))
            box = sc.around(c, [ri + 10.0 for ri in r])
            if box is not None:
                sd = np.minimum(ellipsoid_sd(sc.coords(box), c, r), self.cav[box] - 2.0)
                sc.paint(box, sd, u(-880.0, -820.0) + self.texture(box, 25.0, 10.0))

    def ribs(self) -> None:
        """Lower ribs: short bone arcs in the muscle wall. A rib runs down and forwards, so
        one axial slice cuts several; none below the costal margin (low at the flanks,
        high in front) or over the anterior midline."""
        sc, u, s = self.sc, self.u, self.s
        full = sc.full()
        zz, yy, xx = sc.coords(full)
        phi = np.abs(np.arctan2((xx - self.cx) / self.a_body, (yy - self.cy) / self.b_ant))
        # phi: 0 at the back, pi/2 at the flanks, pi in front
        g = zz - self.zs + 0.3 * 120.0 * s * phi
        period = 30.0 * s
        bars = (np.cos(2.0 * np.pi * g / period) - 0.55) * period / (2.0 * np.pi)
        ring = 4.0 - np.abs(self.body_sd - self.fat_depth - 0.5 * self.t_mus)
        margin = (
            u(-25.0, 0.0) * s
            - 30.0 * s * np.sin(phi)
            + 60.0 * s * np.maximum(0.0, -np.cos(phi)) ** 2
        )
        costal = zz - self.zs - margin
        no_midline = np.abs(xx - self.cx) - 30.0 * s + 100.0 * np.maximum(0.0, np.cos(phi))
        rib = np.minimum(np.minimum(ring, bars), np.minimum(costal, no_midline))
        sc.paint(full, rib, u(300.0, 600.0) + self.texture(full, 40.0))

    def spine(self) -> None:
        """Vertebral bodies with discs, canal, posterior elements; back muscles, psoas."""
        sc, u, s = self.sc, self.u, self.s
        vx, vy = self.vx, self.vy
        vb_r = (np.inf, 16.0 * s, 21.0 * s)
        canal_y = vy + vb_r[1] + 9.0 * s
        back = self.cy + self.b_post - 0.6 * self.t_fat - 4.0 * s
        muscle = self.muscle_hu
        for side in (-1.0, 1.0):
            c = (0.0, canal_y + 18.0 * s, vx + side * 27.0 * s)
            r = (np.inf, 20.0 * s, 22.0 * s)
            box = sc.around(c, (1e6, r[1] + 8.0, r[2] + 8.0))
            sd = ellipsoid_sd(sc.coords(box), c, r) + self.warp(box, 2.0)
            sd = np.minimum(sd, self.body_sd[box] - 0.6 * self.t_fat)
            sc.paint(box, sd, muscle + self.texture(box, 4.0, 3.0))
            top, bottom = self.zs + 10.0 * s, sc.axes[0][0] - 10.0
            if bottom < top:  # psoas: from nothing at the kidneys' level, growing downwards
                pts = np.array(
                    [
                        [top, vy - 2.0 * s, vx + side * 26.0 * s],
                        [bottom, vy - 4.0 * s, vx + side * 36.0 * s],
                    ]
                )
                radii = np.array([3.0 * s, 4.0 + 16.0 * s * min(1.0, (top - bottom) / 110.0)])
                box, sd = tube_sd(sc, pts, radii)
                sc.paint(box, sd, muscle + self.texture(box, 4.0, 3.0))
        period = 30.0 * s
        phase = np.cos(2.0 * np.pi * (sc.axes[0] - u(0.0, period)) / period)[:, None, None]
        disc_on = phase > np.cos(np.pi * 7.0 / 30.0)
        arch_on = phase < 0.0
        box = sc.around((0.0, vy, vx), (1e6, vb_r[1] + 6.0, vb_r[2] + 6.0))
        sd = ellipsoid_sd(sc.coords(box), (0.0, vy, vx), vb_r)
        hu = np.where(sd < 2.5, u(450.0, 700.0), u(150.0, 250.0)) + self.texture(box, 30.0)
        hu = np.where(disc_on[box[0]], u(70.0, 100.0) + self.texture(box, 5.0), hu)
        sc.paint(box, sd, hu)
        bone_hu = u(350.0, 550.0)
        c = (0.0, canal_y, vx)
        box = sc.around(c, (1e6, 20.0 * s, 20.0 * s))
        co = sc.coords(box)
        arch = np.minimum(
            ellipsoid_sd(co, c, (np.inf, 13.0 * s, 13.0 * s)), co[1] - (canal_y - 4.0 * s)
        )
        sc.paint(box, arch, bone_hu + self.texture(box, 30.0))
        half = max((back - canal_y - 10.0 * s) / 2.0, 4.0)
        c = (0.0, canal_y + 10.0 * s + half, vx)
        box = sc.around(c, (1e6, half + 6.0, 12.0))
        sc.paint(box, ellipsoid_sd(sc.coords(box), c, (np.inf, half, 5.0 * s)), bone_hu)
        for side in (-1.0, 1.0):
            c = (0.0, canal_y - 3.0 * s, vx + side * 24.0 * s)
            box = sc.around(c, (1e6, 12.0, 14.0 * s + 6.0))
            sd = ellipsoid_sd(sc.coords(box), c, (np.inf, 5.0 * s, 14.0 * s))
            sc.paint(box, sd, bone_hu, where=arch_on[box[0]])
        c = (0.0, canal_y, vx)
        box = sc.around(c, (1e6, 12.0 * s, 12.0 * s))
        sc.paint(box, ellipsoid_sd(sc.coords(box), c, (np.inf, 7.0 * s, 8.0 * s)), u(15.0, 30.0))

    def spleen(self) -> None:
        """Against the left posterolateral wall, its long axis along the ribs."""
        sc, u, s = self.sc, self.u, self.s
        theta = np.deg2rad(u(20.0, 50.0))
        nrm = np.array([np.cos(theta) / self.a_cav, np.sin(theta) / self.b_cav])
        nrm /= np.linalg.norm(nrm)
        thick, length = u(16.0, 22.0) * s, u(42.0, 56.0) * s
        c = (
            self.zs + u(55.0, 70.0) * s,
            self.cy + self.b_cav * np.sin(theta) - nrm[1] * (thick + 2.0),
            self.cx + self.a_cav * np.cos(theta) - nrm[0] * (thick + 2.0),
        )
        r = (u(40.0, 52.0) * s, length, thick)
        box = sc.around(c, (r[0] + 10.0, length + 10.0, length + 10.0))
        sd = ellipsoid_sd(sc.coords(box), c, r, angle=float(np.arctan2(nrm[1], nrm[0])))
        sd = np.minimum(sd + self.warp(box, 0.15 * thick), self.cav[box] - 1.0)
        sc.paint(box, sd, self.spleen_hu + self.texture(box, 5.0, 3.0), 2)

    def liver(self) -> None:
        """A large right lobe that narrows and moves laterally downwards, a left lobe
        across the midline in front of the stomach, slightly darker hepatic veins."""
        sc, u, s = self.sc, self.u, self.s
        zs, cy, cx = self.zs, self.cy, self.cx
        c_r = (zs + u(20.0, 40.0) * s, cy + u(-10.0, 10.0) * s, cx - u(50.0, 62.0) * s)
        r_r = (u(70.0, 85.0) * s, u(70.0, 85.0) * s, u(60.0, 72.0) * s)
        c_l = (zs + u(35.0, 55.0) * s, cy - u(40.0, 55.0) * s, cx + u(0.0, 25.0) * s)
        r_l = (u(30.0, 40.0) * s, u(25.0, 35.0) * s, u(50.0, 65.0) * s)
        box = sc.box(
            (c_r[0] - r_r[0] - 10.0, cy - self.b_ant, cx - self.a_body),
            (max(c_r[0] + r_r[0], c_l[0] + r_l[0]) + 10.0, cy + self.b_post, cx + 100.0 * s),
        )
        if box is None:
            return
        co = sc.coords(box)
        right = ellipsoid_sd(co, c_r, r_r, shear=(u(-0.1, 0.1), u(0.25, 0.45)))
        left = ellipsoid_sd(co, c_l, r_l, angle=u(-0.3, 0.1))
        sd = smooth_union(right, left, 15.0 * s) + self.warp(box, 6.0)
        sd = np.minimum(sd, self.cav[box] - 1.0)
        sc.paint(box, sd, self.liver_hu + self.texture(box, 4.0, 4.0), 1)
        top = np.array([c_r[0] + 0.6 * r_r[0], self.front - 14.0 * s, self.vx - 25.0 * s])
        for _ in range(int(self.rng.integers(2, 5))):
            end = top + np.array([u(-60.0, -20.0), u(-60.0, 0.0), u(-70.0, 20.0)]) * s
            pts = catmull_rom(np.array([top, (top + end) / 2.0, end]), 4.0)
            vbox, vsd = tube_sd(sc, pts, np.linspace(5.0, 2.5, len(pts)) * s)
            if vbox is not None:
                inside = sc.label[vbox] == 1
                sc.paint(vbox, vsd, self.blood_hu + self.texture(vbox, 3.0), 1, where=inside)

    def stomach(self) -> None:
        """Fundus and body high on the left, the antrum across to the right; gas above an
        air-fluid level (the patient lies on the back); the esophagus comes down in front
        of the aorta and joins at the cardia."""
        sc, u, s = self.sc, self.u, self.s
        zs, cy, cx = self.zs, self.cy, self.cx
        disten = u(0.8, 1.1)
        c_f = (zs + u(40.0, 55.0) * s, cy + u(-35.0, -15.0) * s, cx + u(42.0, 56.0) * s)
        r_f = tuple(v * disten * s for v in (u(30.0, 40.0), u(26.0, 34.0), u(30.0, 40.0)))
        c_a = (zs + u(5.0, 20.0) * s, cy - u(40.0, 55.0) * s, cx + u(0.0, 20.0) * s)
        r_a = tuple(v * disten * s for v in (u(18.0, 25.0), u(16.0, 22.0), u(32.0, 42.0)))
        box = sc.box(
            (c_a[0] - r_a[0] - 10.0, cy - self.b_ant, c_a[2] - r_a[2] - 20.0),
            (c_f[0] + r_f[0] + 10.0, cy + self.b_post, c_f[2] + r_f[2] + 20.0),
        )
        if box is not None:
            co = sc.coords(box)
            fundus = ellipsoid_sd(co, c_f, r_f, angle=u(-0.5, -0.1))
            antrum = ellipsoid_sd(co, c_a, r_a, angle=u(0.1, 0.5))
            sd = smooth_union(fundus, antrum, 20.0 * s) + self.warp(box, 4.0)
            sd = np.minimum(sd, self.cav[box] - 2.0)
            sc.paint(box, sd, u(35.0, 50.0) + self.enh["wall"] + self.texture(box, 4.0), 5)
            level = c_f[1] - u(-5.0, 30.0) * s
            food = u(0.0, 30.0) + self.texture(box, u(2.0, 20.0), u(0.0, 25.0))
            gas = u(-1000.0, -950.0) if self.enh["gas"] else food
            lumen = np.where(co[1] < level, gas, food)
            sc.paint(box, sd - u(4.0, 6.0), lumen)
        cardia = np.array([c_f[0] + 10.0 * s, c_f[1] + 5.0 * s, c_f[2] - 0.9 * r_f[2]])
        eso = np.array(
            [
                [sc.axes[0][-1] + 20.0, self.front - u(20.0, 26.0) * s, self.vx + u(0.0, 8.0) * s],
                [zs + u(75.0, 90.0) * s, self.front - 28.0 * s, self.vx + u(8.0, 16.0) * s],
                cardia,
            ]
        )
        pts = catmull_rom(eso, 3.0)
        box, sd = tube_sd(sc, pts, np.full(len(pts), u(7.0, 10.0) * s))
        sc.paint(box, sd, u(35.0, 50.0) + self.enh["wall"] + self.texture(box, 4.0), 7)
        if self.rng.uniform() < 0.3:
            sc.paint(box, sd - 5.0 * s, u(-1000.0, -900.0))

    def tube(self, ctrl: np.ndarray, label: int, gas: float, stool: bool) -> None:
        """A bowel segment through control points (Z, Y, X, radius): wall, then fluid or
        stool with gas pockets; the label covers the lumen."""
        sc, u = self.sc, self.u
        pts = catmull_rom(ctrl, 4.0)
        box, sd = tube_sd(sc, pts[:, :3], pts[:, 3], margin=3.0)
        if box is None:
            return
        sd = np.minimum(sd + self.warp(box, 2.0), self.cav[box] - 1.0)
        sc.paint(box, sd, u(30.0, 50.0) + self.enh["wall"] + self.texture(box, 5.0), label)
        if stool:
            content = u(-150.0, 20.0) + self.texture(box, 60.0, 40.0)
        else:
            content = u(5.0, 30.0) + self.texture(box, 5.0)
        if gas > 0:
            lumps = self.lumps[box]
            content = np.where(lumps > np.quantile(lumps, 1.0 - gas), u(-1000.0, -900.0), content)
        sc.paint(box, sd - u(2.5, 4.0), content)

    def bowel_loops(self) -> None:
        """Small-intestine loops low in the front of the abdomen."""
        s, rng = self.s, self.rng
        a_bw, b_bw = self.a_cav - 20.0 * s, self.b_ant - self.t_fat - self.t_mus - 20.0 * s
        lo = np.array([self.zs - 130.0 * s, self.cy - 0.9 * b_bw, self.cx - 0.55 * a_bw])
        hi = np.array([self.zs - 35.0 * s, self.cy + 0.1 * b_bw, self.cx + 0.55 * a_bw])
        for _ in range(int(rng.integers(4, 8))):
            p = lo + (hi - lo) * rng.uniform(size=3)
            ctrl = [p]
            for _ in range(int(rng.integers(2, 4))):
                step = rng.normal(size=3)
                p = np.clip(p + 40.0 * s * step / np.linalg.norm(step), lo, hi)
                ctrl.append(p)
            radius = np.full((len(ctrl), 1), self.u(8.0, 13.0) * s)
            gas = self.u(0.0, 0.3) if rng.uniform() < 0.4 else 0.0
            self.tube(np.hstack([np.array(ctrl), radius]), 11, gas, False)

    def colon(self) -> None:
        """Ascending on the right, transverse sagging in front, descending on the left."""
        u, s, zs, cy, cx = self.u, self.s, self.zs, self.cy, self.cx
        a_bw, b_bw = self.a_cav - 20.0 * s, self.b_ant - self.t_fat - self.t_mus - 20.0 * s
        ctrl = np.array(
            [
                (zs - 140.0 * s, cy + u(0.0, 20.0) * s, cx - a_bw * u(0.85, 0.95)),
                (zs - 75.0 * s, cy + u(-10.0, 10.0) * s, cx - a_bw * u(0.85, 0.95)),
                (zs + u(-40.0, -25.0) * s, cy - 0.5 * b_bw, cx - a_bw * u(0.7, 0.8)),
                (zs + u(-75.0, -45.0) * s, cy - b_bw * u(0.8, 0.95), cx + u(-10.0, 10.0) * s),
                (zs + u(-30.0, -10.0) * s, cy - 0.6 * b_bw, cx + 0.6 * a_bw),
                (zs + u(-5.0, 20.0) * s, cy + u(-10.0, 10.0) * s, cx + a_bw * u(0.85, 0.95)),
                (zs - 60.0 * s, cy + u(5.0, 25.0) * s, cx + a_bw * u(0.88, 0.98)),
                (zs - 140.0 * s, cy + u(10.0, 25.0) * s, cx + a_bw * u(0.85, 0.95)),
            ]
        )
        radii = self.rng.uniform(14.0, 21.0, (len(ctrl), 1)) * s
        self.tube(np.hstack([ctrl, radii]), 10, u(0.1, 0.5), True)

    def duodenum_and_pancreas(self) -> None:
        """The pancreas from the splenic hilum across the aorta to its head, which the
        duodenal C-loop wraps."""
        sc, u, s, zs, vx, front = self.sc, self.u, self.s, self.zs, self.vx, self.front
        head = (zs + u(-12.0, 0.0) * s, front - u(24.0, 32.0) * s, vx - u(30.0, 40.0) * s)
        duo = [
            (zs + u(5.0, 15.0) * s, head[1] - 30.0 * s, head[2] + 15.0 * s, u(9.0, 12.0) * s),
            (zs + u(0.0, 8.0) * s, head[1] - 12.0 * s, head[2] - 24.0 * s, u(9.0, 12.0) * s),
            (zs - 25.0 * s, head[1] + 5.0 * s, head[2] - 27.0 * s, u(9.0, 12.0) * s),
            (zs - 50.0 * s, head[1] + 10.0 * s, head[2] + 2.0 * s, u(9.0, 12.0) * s),
            (zs - 50.0 * s, front - 24.0 * s, vx + 15.0 * s, u(8.0, 11.0) * s),
            (zs - 35.0 * s, head[1], vx + 30.0 * s, u(8.0, 11.0) * s),
        ]
        self.tube(np.array(duo), 9, u(0.0, 0.3), False)
        pan = [
            (
                zs + u(20.0, 35.0) * s,
                self.vy + u(-10.0, 5.0) * s,
                vx + u(70.0, 85.0) * s,
                u(8.0, 11.0) * s,
            ),
            (zs + u(12.0, 22.0) * s, front - u(20.0, 25.0) * s, vx + 30.0 * s, u(9.0, 12.0) * s),
            (zs + u(5.0, 12.0) * s, front - u(30.0, 35.0) * s, vx - 5.0 * s, u(9.0, 12.0) * s),
            (*head, u(13.0, 17.0) * s),
            (zs - u(18.0, 25.0) * s, front - 15.0 * s, vx - 22.0 * s, u(8.0, 11.0) * s),
        ]
        pts = catmull_rom(np.array(pan), 3.0)
        box, sd = tube_sd(sc, pts[:, :3], pts[:, 3], margin=3.0)
        hu = u(32.0, 48.0) + self.enh["pancreas"]
        sc.paint(box, sd + self.warp(box, 2.5), hu + self.texture(box, 7.0, 5.0), 8)

    def kidneys(self) -> None:
        """Beside the spine, the left one higher, upper poles tilted medially; the sinus
        fat opens medially at the hilum."""
        sc, u, s = self.sc, self.u, self.s
        hu = u(25.0, 40.0) + self.enh["kidney"]
        for side, lab, dz in ((1.0, 3, u(0.0, 15.0)), (-1.0, 4, u(-30.0, -15.0))):
            c = (self.zs + dz * s, self.vy + u(0.0, 12.0) * s, self.vx + side * u(50.0, 62.0) * s)
            r = (u(48.0, 58.0) * s, u(20.0, 25.0) * s, u(22.0, 28.0) * s)
            ang = side * np.deg2rad(u(20.0, 40.0))
            box = sc.around(c, (r[0] + 10.0, 45.0 * s, 45.0 * s))
            co = sc.coords(box)
            sd = ellipsoid_sd(co, c, r, angle=ang, shear=(0.0, -side * u(0.1, 0.2)))
            sd = sd + self.warp(box, 2.0)
            sc.paint(box, sd, hu + self.texture(box, 4.0, 2.0), lab)
            medial = -side * np.array([np.cos(ang), np.sin(ang)])  # (x, y) towards the hilum
            cs = (c[0], c[1] + medial[1] * 0.75 * r[2], c[2] + medial[0] * 0.75 * r[2])
            sinus = ellipsoid_sd(co, cs, (0.5 * r[0], 0.35 * r[1], 0.45 * r[2]), angle=ang)
            fat = u(-80.0, -30.0) + self.texture(box, 10.0)
            sc.paint(box, sinus, fat, 0, where=sc.label[box] == lab)

    def vessels(self) -> None:
        """Aorta left of the midline in front of the spine, IVC on the right."""
        sc, u, s = self.sc, self.u, self.s
        rad = u(9.0, 12.0) * s
        for c, r in (
            ((0.0, self.front - u(10.0, 13.0) * s, self.vx + u(6.0, 14.0) * s), (np.inf, rad, rad)),
            (
                (0.0, self.front - u(8.0, 12.0) * s, self.vx - u(22.0, 30.0) * s),
                (np.inf, 9.0 * s, 13.0 * s),
            ),
        ):
            box = sc.around(c, (1e6, r[1] + 6.0, r[2] + 6.0))
            sd = ellipsoid_sd(sc.coords(box), c, r)
            sc.paint(box, sd, self.blood_hu + self.texture(box, 3.0), 0)

    def gallbladder(self) -> None:
        """Fluid under the liver, in front and medially."""
        sc, u, s = self.sc, self.u, self.s
        c = (self.zs + u(-25.0, -5.0) * s, self.cy - u(35.0, 55.0) * s, self.cx - u(30.0, 50.0) * s)
        r = (u(25.0, 38.0) * s, u(12.0, 18.0) * s, u(12.0, 18.0) * s)
        box = sc.around(c, (r[0] + 10.0, 30.0 * s, 30.0 * s))
        sd = ellipsoid_sd(
            sc.coords(box), c, r, angle=u(0.0, np.pi), shear=(u(-0.3, 0.0), u(0.0, 0.3))
        )
        sd = np.minimum(sd + self.warp(box, 2.0), self.cav[box] - 2.0)
        sc.paint(box, sd, u(0.0, 20.0) + self.texture(box, 3.0), 6)

    def acquire(self) -> tuple[np.ndarray, np.ndarray]:
        """Partial volume, then slightly correlated quantum noise; HU as int16."""
        u, shape = self.u, self.sc.shape
        img = ndi.gaussian_filter(self.sc.image[0], (0.35, u(0.4, 0.6), u(0.4, 0.6)))
        noise = ndi.gaussian_filter(
            self.rng.standard_normal(shape).astype(np.float32), (0.0, 0.6, 0.6)
        )
        img += noise * (u(6.0, 18.0) / (noise.std() + 1e-8))
        return np.clip(np.rint(img), -1024, 3071).astype(np.int16), self.sc.label


def make_abdomen_case(
    rng_or_seed: np.random.Generator | int | None,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    phase: str = "unenhanced",
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic abdominal CT volume.

    Returns ``(image, label)``, both (Z, Y, X): image int16 in Hounsfield units, label
    uint8 with WORD's values (see ``DRAWN_LABELS``). ``spacing`` (mm, Z Y X) defaults to
    the field of view ``FIELD_OF_VIEW`` divided by ``shape``. ``phase`` is ``unenhanced``
    or ``venous`` (see ``PHASES``). The same seed gives the same arrays.
    """
    rng = as_rng(rng_or_seed)
    shape, spacing = resolve_grid(
        shape, spacing, FIELD_OF_VIEW, MIN_FIELD_OF_VIEW, SHAPE_LO, SHAPE_HI, "abdomen"
    )
    if phase not in PHASES:
        raise DmspsError(f"unknown CT phase '{phase}' (choose from {', '.join(PHASES)})")
    return _Abdomen(rng, shape, spacing, phase).draw()


def make_abdomen_source(
    out: str | Path,
    cases: int = 30,
    seed: int = 0,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    phase: str = "unenhanced",
) -> Path:
    """Write a synthetic WORD-like source dataset to ``out``; returns ``out``.

    Layout as in the WORD release: ``imagesTr/word_0001.nii.gz`` with its label
    ``labelsTr/word_0001.nii.gz``, then ``imagesVal``/``labelsVal`` and
    ``imagesTs``/``labelsTs`` (about 60/20/20 %, at least one case each), numbered
    consecutively. Case ``i`` (from 0) is drawn from seed ``seed * 100003 + i``, so a case
    is the same whatever ``cases`` is. Import it with ``dmsps import word OUT DATA``.
    """
    cases = check_int(cases, "--cases", 3, 9999)
    seed = check_seed(seed)
    shape, spacing = resolve_grid(
        shape, spacing, FIELD_OF_VIEW, MIN_FIELD_OF_VIEW, SHAPE_LO, SHAPE_HI, "abdomen"
    )
    out = Path(out)
    prepare_out(out, overwrite, _source_entry)
    counts = split_counts(cases)
    folders = [pair for pair, n in zip(SPLIT_FOLDERS, counts, strict=True) for _ in range(n)]
    geometry = radiological_geometry(shape, spacing)
    for i in progress_bar(range(cases), desc="synth abdomen", unit="case", disable=not progress):
        image, label = make_abdomen_case(
            np.random.default_rng(seed * CASE_SEED_STRIDE + i), shape, spacing, phase
        )
        name = f"word_{i + 1:04d}.nii.gz"
        images, labels = folders[i]
        save_volume(out / images / name, image, geometry, np.int16)
        save_volume(out / labels / name, label, geometry, np.uint8)
    return out
