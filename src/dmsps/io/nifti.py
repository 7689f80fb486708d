"""NIfTI reading and writing that keeps geometry end to end.

Arrays inside dmsps are ordered (Z, Y, X): slices first, which is what 2D training wants.
nibabel stores (X, Y, Z); we transpose on the way in and back on the way out, and keep the
source affine so a written prediction overlays its image exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from dmsps.errors import DataError
from dmsps.io.atomic import atomic_path

NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Geometry:
    """Where a volume sits in space. ``spacing`` is in array order (sz, sy, sx), in mm."""

    affine: np.ndarray
    shape: tuple[int, int, int]

    @property
    def spacing(self) -> tuple[float, float, float]:
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))  # per nibabel axis x, y, z
        return (float(zooms[2]), float(zooms[1]), float(zooms[0]))

    @classmethod
    def from_spacing(cls, shape: tuple[int, int, int], spacing: tuple[float, float, float]):
        """Axis-aligned geometry for data that carries only spacing (e.g. HDF5 volumes)."""
        sz, sy, sx = spacing
        return cls(affine=np.diag([sx, sy, sz, 1.0]), shape=tuple(int(s) for s in shape))

    def same_grid(self, other: Geometry, tol: float = 1e-3) -> bool:
        return self.shape == other.shape and np.allclose(
            self.spacing, other.spacing, rtol=tol, atol=tol
        )

    def mismatch(self, ref: Geometry, what: str, ref_name: str) -> str | None:
        """Why this grid is not ``ref``'s (shape, then spacing), or None when it is."""
        if self.shape != ref.shape:
            return f"{what} shape {self.shape} differs from {ref_name} {ref.shape}"
        if not self.same_grid(ref):
            sp = tuple(round(s, 4) for s in self.spacing)
            ref_sp = tuple(round(s, 4) for s in ref.spacing)
            return f"{what} spacing {sp} mm differs from {ref_name} {ref_sp} mm"
        return None

    def crop(self, box: tuple[slice, ...]) -> Geometry:
        """The geometry of ``array[box]`` (a (Z, Y, X) box): the affine moves its origin to
        the box's first voxel, so the cropped volume still sits where it was in space."""
        start = [b.start or 0 for b in box]
        stop = [b.stop if b.stop is not None else n for b, n in zip(box, self.shape, strict=True)]
        shift = np.eye(4)
        shift[:3, 3] = [start[2], start[1], start[0]]  # nibabel axis order (x, y, z)
        shape = tuple(int(b - a) for a, b in zip(start, stop, strict=True))
        return Geometry(affine=self.affine @ shift, shape=shape)  # type: ignore[arg-type]


def is_nifti(path: str | Path) -> bool:
    return str(path).endswith(NIFTI_ENDINGS)


def strip_ending(name: str) -> str:
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def load_volume(path: str | Path, dtype=np.float32) -> tuple[np.ndarray, Geometry]:
    """Read a 2D or 3D NIfTI as a (Z, Y, X) array plus its geometry.

    Raises DataError naming the file for anything unreadable, so callers never see a
    nibabel traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if not is_nifti(path):
        raise DataError(path, "not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DataError(path, f"cannot read NIfTI ({type(exc).__name__}: {exc})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DataError(path, f"expected a 2D or 3D volume, got shape {tuple(data.shape)}")
    arr = np.ascontiguousarray(np.transpose(data, (2, 1, 0))).astype(dtype, copy=False)
    geom = Geometry(affine=np.asarray(img.affine, dtype=np.float64), shape=tuple(arr.shape))
    return arr, geom


def save_volume(path: str | Path, array: np.ndarray, geometry: Geometry, dtype=None) -> None:
    """Write a (Z, Y, X) array with the given geometry, atomically."""
    path = Path(path)
    array = np.asarray(array)
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
    if dtype is not None:
        array = array.astype(dtype)
    data = np.ascontiguousarray(np.transpose(array, (2, 1, 0)))
    img = nib.Nifti1Image(data, geometry.affine)
    img.header.set_data_dtype(data.dtype)
    ending = ".nii.gz" if str(path).endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=ending) as tmp:
        nib.save(img, str(tmp))
