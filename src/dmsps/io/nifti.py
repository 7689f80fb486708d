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

    @property
    def directions(self) -> np.ndarray:
        """Unit direction of each nibabel axis (x, y, z) in world space, as columns."""
        norms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return self.affine[:3, :3] / np.where(norms > 0, norms, 1.0)

    @property
    def orientation(self) -> str:
        """nibabel's axis codes, e.g. ``"LPS"``: where the x, y and z axes point."""
        return "".join(str(c) for c in nib.orientations.aff2axcodes(self.affine))

    def mismatch(self, ref: Geometry, what: str, ref_name: str) -> str | None:
        """Why this grid is not ``ref``'s (shape, spacing, then orientation), or None.

        Maps are matched to images voxel by voxel, so a label on a flipped or turned grid
        would silently mark the wrong voxels; its position (origin) is not compared.
        """
        if self.shape != ref.shape:
            return (
                f"{what} shape {self.shape} differs from {ref_name} {ref.shape}; resample "
                "or crop it onto the same voxel grid"
            )
        if not self.same_grid(ref):
            sp = tuple(round(s, 4) for s in self.spacing)
            ref_sp = tuple(round(s, 4) for s in ref.spacing)
            return (
                f"{what} spacing {sp} mm differs from {ref_name} {ref_sp} mm; resample it "
                "onto the same voxel grid"
            )
        if not np.allclose(self.directions, ref.directions, atol=1e-3):
            turned = (
                f"{what} orientation {self.orientation} differs from {ref_name} "
                f"{ref.orientation} (axis codes)"
                if self.orientation != ref.orientation
                else f"{what} axes are rotated against {ref_name}"
            )
            return (
                f"{turned}; matched voxel by voxel it would be mirrored or turned: reorient "
                "it onto the image's grid, or copy the image's affine into it if only its "
                "header is wrong"
            )
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


#: Leading bytes of files that get saved under a NIfTI name by mistake.
_OTHER_FORMATS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x89HDF", "an HDF5 file"),
    (b"NRRD", "an NRRD volume"),
    (b"ObjectType", "a MetaImage (.mha) volume"),
    (b"PK\x03\x04", "a zip archive"),
)


def other_format(path: Path) -> str | None:
    """What an unreadable NIfTI holds instead, when its first bytes tell (or None)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if head[128:132] == b"DICM":
        return "a DICOM file"
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return what
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return None


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
        if what := other_format(path):
            raise DataError(
                path, f"holds {what}, not NIfTI (whatever its name); convert it to NIfTI"
            ) from None
        first = str(exc).splitlines()[0][:160] if str(exc) else "no details"
        raise DataError(
            path,
            f"cannot read NIfTI ({type(exc).__name__}: {first.replace(str(path), path.name)}); "
            "the file is damaged, truncated or not NIfTI: copy or export it again",
        ) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise DataError(
            path,
            f"expected a 2D or 3D volume, got {data.ndim}D shape {tuple(data.shape)}; split "
            "it into one 3D file per channel (NAME_0000, NAME_0001, ...) or per time frame",
        )
    arr = np.ascontiguousarray(np.transpose(data, (2, 1, 0))).astype(dtype, copy=False)
    geom = Geometry(affine=np.asarray(img.affine, dtype=np.float64), shape=tuple(arr.shape))
    return arr, geom


def read_geometry(path: str | Path) -> Geometry:
    """A NIfTI file's (Z, Y, X) grid from its header, without reading the voxels (cheap
    on CT-sized files); a 2D file is one slice."""
    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for damaged files
        raise DataError(path, f"cannot read the NIfTI header ({type(exc).__name__})") from None
    shape = tuple(int(s) for s in img.shape[:3]) + (1,) * max(0, 3 - len(img.shape))
    return Geometry(np.asarray(img.affine, np.float64), (shape[2], shape[1], shape[0]))


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
