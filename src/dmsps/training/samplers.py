"""Where training batches come from: a sampler hands the loop (image, scribble, label).

``SliceSampler``
    Every annotated 2D slice resized once to the training size and kept in (device)
    memory. Resizing once up front, instead of per sample per step as the research code
    does, takes data preparation out of the training step; augmentation then runs on whole
    batches on the training device. For 2D data that fits in memory (ACDC: 1 900 slices).
``PatchSampler``
    N-D patches (2D slices or 3D boxes of ``patch_size``) cut from the memory-mapped case
    cache (``dmsps.data.cache``), so a dataset need not fit in RAM. Patches that reach
    past a volume's edge are padded: image with 0, scribble and label with the ignore
    value, so padding is never supervised. A share of patches is centred on a random
    annotated voxel, which matters when scribbles are sparse in a large volume; with
    ``centring="class"`` the class is drawn first (uniformly among those the case's
    scribbles hold), then a voxel of it, so a gallbladder scribbled with 200 voxels is
    centred on as often as a liver with 2 000 (nnU-Net's foreground oversampling does
    the same per class).

Both draw every random number from the loop's ``torch.Generator``, whose state is in
``last.pt``, so a resumed run samples exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from dmsps.data.cache import CaseCache, preprocess
from dmsps.data.layout import Dataset
from dmsps.data.normalization import Normalization
from dmsps.device import host_to
from dmsps.errors import DmspsError
from dmsps.inference.inferers import resize_slices
from dmsps.progress import progress_bar

#: (image, scribble, label or None, valid or None): ``valid`` (B, *patch) bool is False
#: on voxels a patch holds beyond its volume's edge (None: every voxel is real).
Batch4 = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]
#: How a patch centred on annotation picks its centre: any annotated voxel alike, or a
#: class first (uniformly among the case's scribbled classes), then one of its voxels.
CENTRING = ("voxel", "class")


class Sampler(Protocol):
    """What the training loop needs from a data source."""

    def __len__(self) -> int: ...

    def sample(self, batch: int, generator: torch.Generator) -> Batch4:
        """(image (B, C, *patch) float, scribble (B, *patch) long, label or None, valid
        mask or None)."""
        ...


# === in-memory resized slices ==========================================================
@dataclass
class SliceSampler:
    images: torch.Tensor  # (N, C, H, W) float32, normalised
    scribbles: torch.Tensor  # (N, H, W) uint8
    labels: torch.Tensor | None  # (N, H, W) uint8, dense; only when needed

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> SliceSampler:
        return SliceSampler(
            self.images.to(device),
            self.scribbles.to(device),
            None if self.labels is None else self.labels.to(device),
        )

    def sample(self, batch: int, generator: torch.Generator) -> Batch4:
        idx = torch.randint(0, len(self), (batch,), generator=generator)
        idx = host_to(idx, self.images.device)
        lab = None if self.labels is None else self.labels[idx].long()
        return self.images[idx], self.scribbles[idx].long(), lab, None


def load_slices(
    ds: Dataset,
    cases: list[str],
    size: Sequence[int] | int,
    scribble_dir: Path | None = None,
    need_labels: bool = False,
    progress: bool = True,
    schemes: Sequence[Normalization] | None = None,
) -> SliceSampler:
    """Load the training cases' slices; slices with no annotated pixel are dropped."""
    if not cases:
        raise DmspsError(f"{ds.root}: the training split is empty")
    size = (size, size) if isinstance(size, int) else tuple(size)
    ignore = ds.meta.ignore_value
    imgs, scribs, labs = [], [], []
    for case in progress_bar(
        cases, desc="loading training slices", disable=not progress, leave=False
    ):
        image, geom = ds.load_image(case)
        scrib = ds.load_scribble(case, scribble_dir, shape=geom.shape)
        if scrib is None:
            raise ds.missing_scribble(case, scribble_dir)
        label = ds.load_label(case, shape=geom.shape) if need_labels else None
        if need_labels and label is None:
            raise DmspsError(f"{ds.root / 'labelsTr'}: method 'full' needs a label for '{case}'")
        image, _ = preprocess(image, schemes or _zscore(image.shape[0]), crop_nonzero=False)
        # Dense supervision uses every slice; scribble methods only annotated ones.
        keep = np.ones(scrib.shape[0], bool) if need_labels else (scrib != ignore).any((1, 2))
        if not keep.any():
            continue
        t_img = torch.from_numpy(np.ascontiguousarray(image[:, keep].transpose(1, 0, 2, 3)))
        imgs.append(resize_slices(t_img, size, "bilinear"))
        t_s = torch.from_numpy(scrib[keep].astype(np.float32))[:, None]
        scribs.append(resize_slices(t_s, size, "nearest")[:, 0].to(torch.uint8))
        if label is not None:
            t_l = torch.from_numpy(label[keep].astype(np.float32))[:, None]
            labs.append(resize_slices(t_l, size, "nearest")[:, 0].to(torch.uint8))
    if not imgs:
        raise no_annotation_error(ds, scribble_dir)
    return SliceSampler(
        torch.cat(imgs).contiguous(),
        torch.cat(scribs).contiguous(),
        torch.cat(labs).contiguous() if labs else None,
    )


def no_annotation_error(ds: Dataset, scribble_dir: Path | None) -> DmspsError:
    """Every training scribble holds only the unannotated value: nothing to learn from."""
    where = scribble_dir or ds.root / "scribblesTr"
    meta = ds.meta
    return DmspsError(
        f"{where}: no training scribble has an annotated voxel (all hold the unannotated "
        f"value {meta.ignore_value}); draw scribbles with class values 0..{meta.num_classes - 1}"
        ", or import them again with the right unannotated value (--ignore-value)"
    )


def _zscore(channels: int) -> list[Normalization]:
    return [Normalization("zscore")] * channels


# === patches from the memory-mapped cache ==============================================
def _window(start: int, size: int, extent: int) -> tuple[slice, slice]:
    """Source slice inside [0, extent) and where it lands in a patch of ``size``."""
    lo, hi = max(start, 0), min(start + size, extent)
    return slice(lo, max(hi, lo)), slice(lo - start, lo - start + max(hi - lo, 0))


class PatchSampler:
    """Random patches from cached cases (see the module docstring)."""

    def __init__(
        self,
        cache: CaseCache,
        cases: Sequence[str],
        patch_size: Sequence[int],
        ignore: int,
        scribble_dir: Path | None = None,
        need_labels: bool = False,
        annotated_fraction: float = 0.5,
        device: torch.device | str = "cpu",
        centring: str = "voxel",
    ) -> None:
        if not cases:
            raise DmspsError(f"{cache.ds.root}: the training split is empty")
        if len(patch_size) not in (2, 3):
            raise DmspsError(f"patch_size must have 2 or 3 sizes, got {list(patch_size)}")
        if not 0 <= annotated_fraction <= 1:
            raise DmspsError(f"annotated_fraction must be in [0, 1], got {annotated_fraction}")
        if centring not in CENTRING:
            raise DmspsError(f"unknown centring '{centring}' (choose from {', '.join(CENTRING)})")
        self.cache, self.cases = cache, list(cases)
        self.patch = tuple(int(p) for p in patch_size)
        self.box = (1, *self.patch) if len(self.patch) == 2 else self.patch  # (Z, Y, X)
        self.ignore, self.scribble_dir = ignore, scribble_dir
        self.need_labels, self.fraction = need_labels, annotated_fraction
        self.device = torch.device(device)
        self.shapes = [tuple(cache.image(c).shape[1:]) for c in self.cases]
        self.channels = int(cache.image(self.cases[0]).shape[0])
        self.anchors = [cache.annotated(c, scribble_dir) for c in self.cases]
        if not any(len(a) for a in self.anchors) and not need_labels:
            raise no_annotation_error(cache.ds, scribble_dir)
        # Per case, the anchor indices of each scribbled class (class centring only).
        self.by_class: list[list[np.ndarray]] | None = None
        if centring == "class":
            self.by_class = [
                self._group(cache.scribble(c, scribble_dir), a)
                for c, a in zip(self.cases, self.anchors, strict=True)
            ]

    def __len__(self) -> int:
        return len(self.cases)

    @staticmethod
    def _group(scribble: np.ndarray, anchors: np.ndarray) -> list[np.ndarray]:
        if not len(anchors):
            return []
        values = np.asarray(scribble[tuple(anchors.T)])
        return [np.flatnonzero(values == v) for v in np.unique(values)]

    def _anchor(self, i: int, generator: torch.Generator) -> int:
        if self.by_class is None:
            return int(torch.randint(0, len(self.anchors[i]), (), generator=generator))
        groups = self.by_class[i]
        group = groups[int(torch.randint(0, len(groups), (), generator=generator))]
        return int(group[int(torch.randint(0, len(group), (), generator=generator))])

    def _corner(self, i: int, generator: torch.Generator) -> list[int]:
        """Patch origin (Z, Y, X): centred on an annotated voxel, or uniform.

        A centred patch is moved inside the volume along every axis the volume fills
        (the voxel stays in it) and centred on the volume along the others: a patch
        reaching beyond the edge would train on padding that no image holds (a fifth of
        the voxels of ACDC's 8 x 96 x 96 patches were, docs/results.md section 7).
        """
        shape, anchors = self.shapes[i], self.anchors[i]
        centred = float(torch.rand((), generator=generator)) < self.fraction
        if centred and len(anchors):
            k = self._anchor(i, generator)
            return [
                min(max(int(c) - b // 2, 0), n - b) if n >= b else (n - b) // 2
                for c, b, n in zip(anchors[k], self.box, shape, strict=True)
            ]
        corner = []
        for n, b in zip(shape, self.box, strict=True):
            # Uniform over every placement that stays inside; centred when the volume
            # is smaller than the patch.
            span = n - b
            corner.append(
                int(torch.randint(0, span + 1, (), generator=generator)) if span > 0 else span // 2
            )
        return corner

    def _cut(self, array: np.ndarray, corner: Sequence[int], fill: float, dtype) -> np.ndarray:
        lead = array.shape[: array.ndim - 3]
        out = np.full((*lead, *self.box), fill, dtype=dtype)
        src, dst = zip(
            *(_window(c, b, n) for c, b, n in zip(corner, self.box, array.shape[-3:], strict=True)),
            strict=True,
        )
        out[(..., *dst)] = array[(..., *src)]
        return out

    def sample(self, batch: int, generator: torch.Generator) -> Batch4:
        images, scribs, labels, valids = [], [], [], []
        for _ in range(batch):
            i = int(torch.randint(0, len(self.cases), (), generator=generator))
            case = self.cases[i]
            corner = self._corner(i, generator)
            valids.append(self._inside(i, corner))
            # Each map is opened, copied from and released here: the process never holds
            # more than one patch of the cache in memory, however many cases there are.
            images.append(self._cut(self.cache.image(case), corner, 0.0, np.float32))
            scribs.append(
                self._cut(
                    self.cache.scribble(case, self.scribble_dir), corner, self.ignore, np.uint8
                )
            )
            if self.need_labels:
                label = self.cache.label(case)
                if label is None:
                    raise DmspsError(f"method 'full' needs a label for '{case}'")
                labels.append(self._cut(label, corner, self.ignore, np.uint8))
        image = torch.from_numpy(np.stack(images))
        scrib = torch.from_numpy(np.stack(scribs)).long()
        label = torch.from_numpy(np.stack(labels)).long() if labels else None
        valid = torch.from_numpy(np.stack(valids))
        if len(self.patch) == 2:  # (B, C, 1, H, W) -> (B, C, H, W)
            image, scrib, valid = image[:, :, 0], scrib[:, 0], valid[:, 0]
            label = None if label is None else label[:, 0]
        dev = self.device
        label = None if label is None else label.to(dev)
        return image.to(dev), scrib.to(dev), label, valid.to(dev)

    def _inside(self, i: int, corner: Sequence[int]) -> np.ndarray:
        """The patch's voxels that lie inside case ``i`` (Z, Y, X) as a bool mask."""
        axes = [
            (np.arange(c, c + b) >= 0) & (np.arange(c, c + b) < n)
            for c, b, n in zip(corner, self.box, self.shapes[i], strict=True)
        ]
        return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


# === validation volumes ================================================================
@dataclass
class Volume:
    case: str
    image: np.ndarray  # (C, Z, Y, X) normalised
    label: np.ndarray | None


def load_volumes(
    ds: Dataset,
    cases: list[str],
    progress: bool = True,
    schemes: Sequence[Normalization] | None = None,
) -> list[Volume]:
    """Whole validation volumes in memory (small 2D datasets)."""
    out = []
    for case in progress_bar(cases, desc="loading volumes", disable=not progress, leave=False):
        image, geom = ds.load_image(case)
        norm, _ = preprocess(image, schemes or _zscore(image.shape[0]), crop_nonzero=False)
        out.append(Volume(case, norm, ds.load_label(case, shape=geom.shape)))
    return out


class CachedVolumes:
    """Validation volumes read from the case cache one at a time (large 3D datasets)."""

    def __init__(self, cache: CaseCache, cases: Sequence[str]) -> None:
        self.cache = cache
        self.cases = [c for c in cases if cache.info(c)["has_label"]]

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Volume]:
        for case in self.cases:
            label = self.cache.label(case, mmap=False)
            yield Volume(case, self.cache.image(case, mmap=False), label)
