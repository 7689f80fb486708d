"""The preprocessed case cache: each case cropped and normalised once, read memory-mapped.

Large 3D datasets do not fit in RAM as float arrays (BraTS: 369 cases x 4 channels x
155 x 240 x 240 floats = 53 GB), so patch training reads each patch from per-case ``.npy``
files mapped into memory only while the patch is copied out. Like nnU-Net's preprocessed
folder, the cache is built once and reused by both stages and by validation::

    CACHE/
      cache.json                   what it was built from (dataset, schemes, crop)
      images/<case>.npy            (C, Z, Y, X) float32, cropped and normalised
      labels/<case>.npy            (Z, Y, X) uint8 dense labels (cases that have them)
      scribbles/<tag>/<case>.npy   (Z, Y, X) uint8 scribbles of one source (scribblesTr,
                                   or a folder of expanded seeds), same crop
      annotated/<tag>/<case>.npy   (N, 3) int32 coordinates of a sample of annotated voxels
      cases/<case>.json            crop box, source shape and source files' size/mtime

Every file is written atomically, and a case whose source files changed since is built
again, so an interrupted build resumes and an edited dataset is never trained on stale.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dmsps.data.layout import Dataset
from dmsps.data.normalization import Normalization, normalise
from dmsps.errors import DmspsError
from dmsps.io.atomic import atomic_path, write_json
from dmsps.progress import progress_bar

#: Annotated voxels kept per case and class for centring patches on annotation.
ANNOTATED_SAMPLE = 4096
VERSION = 1


def nonzero_box(image: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Bounding box (Z, Y, X) of voxels non-zero in any channel; all of it if none is."""
    mask = (image != 0).any(axis=0)
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=others))
        box.append(
            slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, mask.shape[axis]))
        )
    return tuple(box)


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None
) -> tuple[int, ...]:
    """Grid size after resampling ``shape`` at ``spacing`` mm to ``target`` mm per voxel;
    a target of 0 keeps that axis (e.g. in-plane only for thick-slice MRI)."""
    if not target:
        return tuple(int(n) for n in shape)
    return tuple(
        int(n) if t <= 0 else max(1, round(n * sp / t))
        for n, sp, t in zip(shape, spacing, target, strict=True)
    )


def resample(array: np.ndarray | torch.Tensor, shape: Sequence[int], labels: bool = False):
    """Resample the last three axes of a (C, Z, Y, X) array to ``shape``: trilinear for
    intensities and probabilities, nearest for label maps (pass them as (1, Z, Y, X))."""
    shape = tuple(int(n) for n in shape)
    is_np = isinstance(array, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(array)) if is_np else array
    if tuple(t.shape[-3:]) == shape:
        return array
    dtype = t.dtype
    x = t[None].float()
    if labels:
        out = F.interpolate(x, size=shape, mode="nearest-exact")[0].to(dtype)
    else:
        out = F.interpolate(x, size=shape, mode="trilinear", align_corners=False)[0]
    return out.numpy() if is_np else out


def resample_map(label_map: np.ndarray, shape: Sequence[int], ignore: int) -> np.ndarray:
    """A label or scribble map (Z, Y, X) on another grid, keeping thin strokes.

    Nearest-neighbour downsampling drops most of a one-voxel-wide scribble; here each
    target voxel takes the class that covers most of it, counting only annotated source
    voxels, and is unannotated (``ignore``) only when none of it was annotated.
    """
    shape = tuple(int(n) for n in shape)
    if tuple(label_map.shape) == shape:
        return np.ascontiguousarray(label_map, dtype=np.uint8)
    src = torch.from_numpy(np.ascontiguousarray(label_map))
    best = torch.zeros(shape)
    out = torch.full(shape, ignore, dtype=torch.uint8)
    for c in np.unique(label_map):
        if c == ignore:
            continue
        mask = (src == int(c)).float()[None, None]
        frac = F.interpolate(mask, size=shape, mode="area")[0, 0]
        better = frac > best
        out[better] = int(c)
        best = torch.maximum(best, frac)
    return out.numpy()


def preprocess(
    image: np.ndarray,
    schemes: Sequence[Normalization],
    crop_nonzero: bool,
    spacing: Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Crop (optionally), resample (optionally) and normalise a (C, Z, Y, X) image;
    returns it and the crop box (in the input's voxels).

    Training, validation and ``predict`` all go through here, so the statistics a model
    saw in training are the ones it sees at inference.
    """
    box = nonzero_box(image) if crop_nonzero else tuple(slice(0, n) for n in image.shape[1:])
    cropped = image[(slice(None), *box)]
    if target_spacing:
        if spacing is None:
            raise DmspsError("resampling to a target spacing needs the image's spacing")
        cropped = resample(cropped, resampled_shape(cropped.shape[1:], spacing, target_spacing))
    return normalise(cropped, schemes), box


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def _stamp(path: Path | None) -> list | None:
    if path is None:
        return None
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def scribble_tag(folder: Path | None) -> str:
    """Cache sub-folder of a scribble source: ``scribblesTr`` or a hash of the seeds folder."""
    if folder is None:
        return "scribblesTr"
    digest = hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:10]
    return f"seeds-{digest}"


def _sample_annotated(scribble: np.ndarray, ignore: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ANNOTATED_SAMPLE coordinates per class, so rare classes get centred too."""
    picks = []
    for c in np.unique(scribble[scribble != ignore]):
        coords = np.argwhere(scribble == c)
        if len(coords) > ANNOTATED_SAMPLE:
            coords = coords[rng.choice(len(coords), ANNOTATED_SAMPLE, replace=False)]
        picks.append(coords)
    if not picks:
        return np.zeros((0, scribble.ndim), np.int32)
    return np.concatenate(picks).astype(np.int32)


class CaseCache:
    """Preprocessed cases of one dataset under one set of normalisation/crop settings."""

    def __init__(
        self,
        root: str | Path,
        dataset: Dataset,
        schemes: Sequence[Normalization],
        crop_nonzero: bool = False,
        target_spacing: Sequence[float] | None = None,
    ) -> None:
        self.root = Path(root)
        self.ds = dataset
        self.schemes = list(schemes)
        self.crop_nonzero = crop_nonzero
        self.target_spacing = [float(t) for t in target_spacing] if target_spacing else None
        self.fingerprint = {
            "version": VERSION,
            "dataset": str(dataset.root.resolve()),
            "normalization": [str(s) for s in self.schemes],
            "crop_nonzero": crop_nonzero,
        }
        if self.target_spacing:
            self.fingerprint["target_spacing"] = self.target_spacing
        self._check_fingerprint()

    def _check_fingerprint(self) -> None:
        path = self.root / "cache.json"
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError:
                old = None
            if old != self.fingerprint:
                raise DmspsError(
                    f"{self.root}: this cache was built from other data or settings "
                    f"({old} != {self.fingerprint}); delete it or use another cache folder"
                )
        else:
            write_json(path, self.fingerprint)

    # --- paths ---------------------------------------------------------------------------
    def _p(self, kind: str, case: str, tag: str | None = None) -> Path:
        folder = self.root / kind if tag is None else self.root / kind / tag
        return folder / f"{case}.npy"

    def _info_path(self, case: str) -> Path:
        return self.root / "cases" / f"{case}.json"

    # --- building ------------------------------------------------------------------------
    def _sources(self, case: str, scribble_dir: Path | None) -> dict:
        paths = self.ds.paths(case)
        return {
            "images": [_stamp(p) for p in paths.images],
            "label": _stamp(paths.label),
            "scribble": _stamp(self.ds.scribble_path(case, scribble_dir)),
        }

    def info(self, case: str) -> dict:
        return json.loads(self._info_path(case).read_text())

    def _build_case(self, case: str, need_labels: bool) -> dict:
        info_path = self._info_path(case)
        sources = self._sources(case, None)
        if info_path.is_file() and self._p("images", case).is_file():
            info = json.loads(info_path.read_text())
            fresh = info.get("sources", {}).get("images") == sources["images"] and (
                info.get("sources", {}).get("label") == sources["label"]
            )
            if fresh and (not need_labels or info["has_label"]):
                return info
        image, geom = self.ds.load_image(case)
        norm, box = preprocess(
            image, self.schemes, self.crop_nonzero, geom.spacing, self.target_spacing
        )
        label = self.ds.load_label(case, shape=geom.shape)
        _save_npy(self._p("images", case), norm)
        if label is not None:
            _save_npy(self._p("labels", case), self._grid(label[box], norm.shape[1:]))
        info = {
            "case": case,
            "box": [[b.start, b.stop] for b in box],
            "shape": list(geom.shape),
            "grid": list(norm.shape[1:]),
            "spacing": list(geom.spacing),
            "has_label": label is not None,
            "sources": {"images": sources["images"], "label": sources["label"]},
            "scribbles": {},
        }
        write_json(info_path, info)
        return info

    def _build_scribble(self, case: str, info: dict, folder: Path | None) -> None:
        tag = scribble_tag(folder)
        stamp = _stamp(self.ds.scribble_path(case, folder))
        if (
            info["scribbles"].get(tag) == stamp
            and self._p("scribbles", case, tag).is_file()
            and self._p("annotated", case, tag).is_file()
        ):
            return
        scribble = self.ds.load_scribble(case, folder, shape=tuple(info["shape"]))
        if scribble is None:
            raise self.ds.missing_scribble(case, folder)
        box = tuple(slice(a, b) for a, b in info["box"])
        cropped = self._grid(scribble[box], info["grid"])
        rng = np.random.default_rng(zlib.crc32(case.encode()))  # same sample every build
        _save_npy(self._p("scribbles", case, tag), cropped)
        _save_npy(
            self._p("annotated", case, tag),
            _sample_annotated(cropped, self.ds.meta.ignore_value, rng),
        )
        info["scribbles"][tag] = stamp
        write_json(self._info_path(case), info)

    def _grid(self, label_map: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """A cropped label or scribble map on the cached image's grid, as uint8."""
        return resample_map(label_map.astype(np.uint8), shape, self.ds.meta.ignore_value)

    def prepare(
        self,
        cases: Sequence[str],
        scribble_dir: Path | None = None,
        with_scribbles: bool = True,
        need_labels: bool = False,
        progress: bool = True,
        desc: str = "preprocessing cases",
    ) -> None:
        """Build what ``cases`` need; cases already built from unchanged files are skipped."""
        for case in progress_bar(cases, desc=desc, disable=not progress, leave=False, unit="case"):
            info = self._build_case(case, need_labels)
            if need_labels and not info["has_label"]:
                raise DmspsError(
                    f"{self.ds.root / 'labelsTr'}: method 'full' needs a label for '{case}'"
                )
            if with_scribbles:
                self._build_scribble(case, info, scribble_dir)

    # --- reading -------------------------------------------------------------------------
    def image(self, case: str, mmap: bool = True) -> np.ndarray:
        return np.load(self._p("images", case), mmap_mode="r" if mmap else None)

    def label(self, case: str, mmap: bool = True) -> np.ndarray | None:
        p = self._p("labels", case)
        return np.load(p, mmap_mode="r" if mmap else None) if p.is_file() else None

    def scribble(self, case: str, folder: Path | None = None, mmap: bool = True) -> np.ndarray:
        return np.load(
            self._p("scribbles", case, scribble_tag(folder)), mmap_mode="r" if mmap else None
        )

    def annotated(self, case: str, folder: Path | None = None) -> np.ndarray:
        return np.load(self._p("annotated", case, scribble_tag(folder)))
