"""A dataset's fingerprint: what the planner needs to know about it, read once.

Spacings and shapes of every training case (from the NIfTI headers), per-channel
intensity statistics over the labelled or scribbled voxels of a sample of cases, each
class's share of the voxels, and how dense the scribbles are. Like nnU-Net's
fingerprint, it is plain data (``fingerprint.json``), so a plan can be redone or
explained without reading the images again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dmsps.data import normalization
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.io.atomic import write_json
from dmsps.io.nifti import read_geometry
from dmsps.progress import progress_bar

#: Cases whose voxels are read for the intensity, class and scribble statistics (the
#: geometry of every case is read from its header).
SAMPLE_CASES = 20
#: Voxels drawn per case and channel for the intensity percentiles.
SAMPLE_VOXELS = 10000


@dataclass
class ChannelStats:
    name: str
    mean: float
    std: float
    p005: float  # 0.5th percentile
    p995: float  # 99.5th percentile


@dataclass
class Fingerprint:
    """Plain data; spacings and shapes are (Z, Y, X), in mm and voxels."""

    name: str
    cases: int
    spacings: list[list[float]]
    shapes: list[list[int]]
    channels: list[ChannelStats]
    class_names: list[str]
    #: Mean share of the voxels of a case per class (from labels; from scribbles where a
    #: case has none).
    class_fractions: list[float]
    #: Annotated voxels / all voxels, and slices with a stroke / all slices (scribbles).
    scribble_density: float
    scribbled_slices: float
    #: Each channel's normalisation as the dataset resolves it (channel name, or
    #: dataset.json's "normalization").
    normalization: list[str] = field(default_factory=list)
    sampled_cases: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def median_spacing(self) -> list[float]:
        return [float(v) for v in np.median(np.asarray(self.spacings), axis=0)]

    @property
    def median_shape(self) -> list[int]:
        return [round(float(v)) for v in np.median(np.asarray(self.shapes), axis=0)]

    @property
    def median_extent_mm(self) -> list[float]:
        """Median field of view per axis (shape x spacing of each case)."""
        extent = np.asarray(self.shapes) * np.asarray(self.spacings)
        return [float(v) for v in np.median(extent, axis=0)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Fingerprint:
        data = dict(data)
        data["channels"] = [ChannelStats(**c) for c in data["channels"]]
        return cls(**data)


def compute_fingerprint(ds: Dataset, progress: bool = True) -> Fingerprint:
    """The fingerprint of a dataset's training (and validation) cases."""
    cases = ds.split("train") + ds.split("val")
    if not cases:
        raise DmspsError(f"{ds.root}: no training cases to plan from")
    spacings, shapes = [], []
    for case in cases:
        geom = read_geometry(ds.paths(case).images[0])
        shapes.append(list(geom.shape))
        spacings.append(list(geom.spacing))
    k, ignore = ds.meta.num_classes, ds.meta.ignore_value
    step = max(1, len(cases) // SAMPLE_CASES)
    sample = cases[::step][:SAMPLE_CASES]
    rng = np.random.default_rng(0)
    values: list[list[np.ndarray]] = [[] for _ in range(ds.num_channels)]
    fractions = np.zeros(k)
    annotated = voxels = slices_hit = slices = 0
    for case in progress_bar(sample, desc="fingerprint", unit="case", disable=not progress):
        image, geom = ds.load_image(case)
        label = ds.load_label(case, geom.shape)
        scribble = ds.load_scribble(case, shape=geom.shape)
        if label is not None:
            fractions += np.bincount(label.ravel(), minlength=k)[:k] / label.size
            mask = label > 0
        elif scribble is not None:
            marked = scribble[scribble != ignore]
            counts = np.bincount(marked.ravel(), minlength=k)[:k]
            fractions += counts / max(1, counts.sum())
            mask = (scribble != ignore) & (scribble > 0)
        else:
            mask = np.ones(geom.shape, bool)
        if not mask.any():
            mask = np.ones(geom.shape, bool)
        for c in range(ds.num_channels):
            inside = image[c][mask]
            take = min(SAMPLE_VOXELS, inside.size)
            values[c].append(rng.choice(inside, take, replace=False))
        if scribble is not None:
            hit = scribble != ignore
            annotated += int(hit.sum())
            voxels += hit.size
            slices_hit += int(hit.reshape(hit.shape[0], -1).any(axis=1).sum())
            slices += hit.shape[0]
    channels = []
    for name, vals in zip(ds.meta.channel_names, values, strict=True):
        v = np.concatenate(vals).astype(np.float64)
        channels.append(
            ChannelStats(
                name=name,
                mean=float(v.mean()),
                std=float(v.std()),
                p005=float(np.percentile(v, 0.5)),
                p995=float(np.percentile(v, 99.5)),
            )
        )
    return Fingerprint(
        name=ds.meta.name,
        cases=len(cases),
        spacings=spacings,
        shapes=shapes,
        channels=channels,
        class_names=list(ds.meta.class_names),
        class_fractions=[float(f) for f in fractions / max(1, len(sample))],
        scribble_density=annotated / voxels if voxels else 0.0,
        scribbled_slices=slices_hit / slices if slices else 0.0,
        normalization=[
            str(n)
            for n in normalization.resolve(
                ds.meta.channel_names, ds.meta.extra.get("normalization")
            )
        ],
        sampled_cases=len(sample),
    )


def save_fingerprint(fp: Fingerprint, path: Path) -> None:
    write_json(path, fp.to_dict())
