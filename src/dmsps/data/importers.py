"""Importers: convert source datasets into the dmsps layout (see ``dmsps.data.layout``).

Three sources are supported:

``acdc-h5``
    The HDF5 volumes published with WSL4MIS and used by DMSPS
    (``volumes/<case>.h5`` with keys ``image``, ``label``, ``scribble``; 4 = unannotated)
    and the ``train.txt``/``val.txt``/``test.txt`` case lists. The files carry no voxel
    spacing, so it is given with ``spacing`` (default 10 x 1.5 x 1.5 mm).

``acdc``
    The official ACDC NIfTI release (``<SRC>/patientNNN/patientNNN_frameMM.nii.gz`` and
    ``..._gt.nii.gz``) plus scribble files ``patientNNN_frameMM_scribble.nii.gz``. Real
    spacing and affine are kept. Splits are patient-level, so the two frames of a patient
    never land in different splits.

``nifti``
    Any folder of NIfTI images with matching labels and/or scribbles. Name matching:

    * a case is an image file name without its ending (``.nii.gz`` or ``.nii``);
    * image names ending in ``_0000``, ``_0001``, ... are channels of one case
      (``brain_0000.nii.gz`` and ``brain_0001.nii.gz`` make the 2-channel case ``brain``);
    * the label of case ``X`` is ``X``, ``X_gt``, ``X_label`` or ``X_seg`` in the labels
      folder; its scribble is ``X`` or ``X_scribble`` in the scribbles folder;
    * when labels or scribbles share the images folder, only the suffixed names match
      and they are not taken for images.

Every importer validates as it goes (missing files or keys, grids that differ, values
outside the class range) and raises ``DataError`` naming the source file, never writes
into its source folders, and writes dataset.json last so a folder holding it is complete.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmsps.data.layout import LAYOUT_ENTRIES, SPLITS, DatasetMeta, DatasetWriter, cardiac_meta
from dmsps.errors import DataError, DmspsError
from dmsps.io.nifti import NIFTI_ENDINGS, Geometry, load_volume, strip_ending
from dmsps.io.paths import is_within

#: ACDC through-plane x in-plane spacing assumed for the HDF5 volumes, in mm (sz, sy, sx).
ACDC_H5_SPACING = (10.0, 1.5, 1.5)

LABEL_SUFFIXES = ("_gt", "_label", "_seg")
SCRIBBLE_SUFFIXES = ("_scribble",)
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class CaseData:
    """One case in memory, already in dmsps conventions (scribble ignore value = C)."""

    image: np.ndarray  # (channels, Z, Y, X)
    geometry: Geometry
    label: np.ndarray | None
    scribble: np.ndarray | None
    scribble_source: Path | None = None  # for messages about the scribble


@dataclass
class SourceCase:
    """A case of the source dataset: its name, split and how to load it."""

    name: str
    split: str
    load: Callable[[], CaseData]


@dataclass
class ImportResult:
    out: Path
    splits: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {len(self.splits.get(k, []))}" for k in SPLITS)
        total = sum(len(v) for v in self.splits.values())
        return (
            f"imported {total} cases into {self.out} ({sizes}); "
            f"check it with: dmsps check-data {self.out}"
        )


# === shared helpers ===================================================================
def prepare_output(out: Path, sources: Iterable[Path], overwrite: bool) -> None:
    """Refuse to write into a source or over existing data unless ``overwrite``."""
    for src in sources:
        if is_within(out, src):
            raise DmspsError(
                f"{out}: output folder lies inside the source {src}; importers never write "
                "into their input, choose a folder elsewhere"
            )
        if is_within(src, out):
            raise DmspsError(f"{out}: output folder contains the source {src}; choose another")
    if out.exists() and not out.is_dir():
        raise DmspsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            hint = (
                ""
                if (out / "dataset.json").exists()
                else " (it has no dataset.json: an interrupted import?)"
            )
            raise DmspsError(
                f"{out}: output folder is not empty{hint}; choose a new folder or pass "
                "--overwrite to replace the dataset in it"
            )
        _remove_layout(out)


def _remove_layout(out: Path) -> None:
    """Delete what an import writes (and nothing else) from ``out``.

    dataset.json goes first: an interrupted removal leaves a folder marked incomplete.
    """
    for name in LAYOUT_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def write_dataset(
    out: Path,
    meta: DatasetMeta,
    cases: Sequence[SourceCase],
    progress: bool = True,
    desc: str = "import",
) -> ImportResult:
    """Load, check and write every case, then dataset.json and splits.json.

    On any failure (bad source file, Ctrl-C) the partial output is removed again, so the
    same command can simply be rerun once the source is fixed.
    """
    existed = out.exists()
    try:
        return _write_cases(out, meta, cases, progress, desc)
    except BaseException:
        _remove_layout(out)
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def _write_cases(
    out: Path, meta: DatasetMeta, cases: Sequence[SourceCase], progress: bool, desc: str
) -> ImportResult:
    from tqdm import tqdm

    writer = DatasetWriter(out, meta)
    result = ImportResult(out, {s: [] for s in SPLITS})
    for case in tqdm(cases, desc=desc, unit="case", disable=not progress, leave=False):
        data = case.load()
        if data.scribble is not None and not (data.scribble != meta.ignore_value).any():
            result.warnings.append(
                f"{data.scribble_source}: warning: scribble of '{case.name}' has no annotated voxel"
            )
        writer.write_case(
            case.name,
            data.image,
            data.geometry,
            label=data.label,
            scribble=data.scribble,
            test=case.split == "test",
        )
        result.splits[case.split].append(case.name)
    writer.finish(result.splits)
    return result


def check_label(label: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """Integer class map in 0..C-1 as uint8, or DataError naming ``path``."""
    label = _as_integer_map(label, path, "label")
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        bad = _values_outside(label, 0, num_classes - 1)
        raise DataError(path, f"label values {bad} outside 0..{num_classes - 1}")
    return label.astype(np.uint8)


def convert_scribble(
    scribble: np.ndarray,
    num_classes: int,
    unannotated: int,
    path: Path,
    value_map: dict[int, int] | None = None,
) -> np.ndarray:
    """Map a source scribble to dmsps values: classes 0..C-1 as they are (after
    ``value_map``), the source's ``unannotated`` value to C. DataError for other values."""
    s = _as_integer_map(scribble, path, "scribble")
    out = s.copy()
    for old, new in (value_map or {}).items():
        out[s == old] = new
    out[s == unannotated] = num_classes
    if out.size and (out.min() < 0 or out.max() > num_classes):
        bad = _values_outside(out, 0, num_classes)
        raise DataError(
            path,
            f"scribble values {bad} are neither classes 0..{num_classes - 1} nor the "
            f"unannotated value {unannotated}",
        )
    return out.astype(np.uint8)


def check_unannotated(unannotated: int, num_classes: int, value_map: dict[int, int]) -> None:
    """An unannotated value that is also a class value would erase that class."""
    if 0 <= unannotated < num_classes and unannotated not in value_map.values():
        raise DmspsError(
            f"unannotated value {unannotated} is also class {unannotated}; if your scribbles "
            f"use another value for class {unannotated}, say which with --scribble-map "
            f"(e.g. --scribble-map {num_classes}:{unannotated})"
        )


def parse_value_map(text: str | None) -> dict[int, int]:
    """``"4:0,0:4"`` -> {4: 0, 0: 4}."""
    if not text:
        return {}
    out: dict[int, int] = {}
    for item in text.split(","):
        try:
            old, new = (int(v) for v in item.split(":"))
        except ValueError:
            raise DmspsError(
                f"--scribble-map: '{item}' is not OLD:NEW with integer values"
            ) from None
        out[old] = new
    return out


def _as_integer_map(arr: np.ndarray, path: Path, kind: str) -> np.ndarray:
    arr = np.asarray(arr)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.isfinite(arr).all():
        raise DataError(path, f"{kind} holds NaN or infinite values")
    rounded = np.round(arr)
    if (rounded != arr).any():
        raise DataError(path, f"{kind} holds non-integer values (it must hold class numbers)")
    return rounded.astype(np.int64)


def _values_outside(arr: np.ndarray, lo: int, hi: int) -> str:
    bad = np.unique(arr[(arr < lo) | (arr > hi)])
    return ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")


def _same_shape(arr: np.ndarray, ref_shape: tuple[int, ...], path: Path, what: str) -> None:
    if tuple(arr.shape) != tuple(ref_shape):
        raise DataError(
            path, f"{what} shape {tuple(arr.shape)} differs from image shape {ref_shape}"
        )


def _same_grid(g: Geometry, ref: Geometry, path: Path, what: str) -> None:
    if g.shape != ref.shape:
        raise DataError(path, f"{what} shape {g.shape} differs from the image's {ref.shape}")
    if not g.same_grid(ref):
        sp = tuple(round(s, 4) for s in g.spacing)
        ref_sp = tuple(round(s, 4) for s in ref.spacing)
        raise DataError(path, f"{what} spacing {sp} mm differs from the image's {ref_sp} mm")


def random_split(
    groups: dict[str, list[str]],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Deterministic group-level split (a group's cases stay together); case -> split.

    With at least three groups, val and test get at least one group each when their
    fraction is positive, so a small dataset still validates.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DmspsError("--val-fraction and --test-fraction must be in [0, 1) with sum < 1")
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n = len(order)
    n_val = round(val_fraction * n)
    n_test = round(test_fraction * n)
    if n >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    n_val = min(n_val, max(n - 1, 0))
    n_test = min(n_test, max(n - 1 - n_val, 0))
    out: dict[str, str] = {}
    for i, g in enumerate(order):
        split = "val" if i < n_val else "test" if i < n_val + n_test else "train"
        for case in groups[g]:
            out[case] = split
    return out


def read_splits_file(path: Path) -> dict[str, list[str]]:
    """A JSON object with optional "train"/"val"/"test" lists of names."""
    if not path.is_file():
        raise DataError(path, "splits file not found")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed JSON ({exc})") from None
    if not isinstance(obj, dict) or set(obj) - set(SPLITS):
        raise DataError(
            path, 'must be an object like {"train": [...], "val": [...], "test": [...]}'
        )
    out = {}
    for s in SPLITS:
        names = obj.get(s, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(path, f"'{s}' must be a list of names")
        out[s] = names
    return out


def assign_from_splits(
    path: Path, splits: dict[str, list[str]], groups: dict[str, list[str]]
) -> dict[str, str]:
    """Case -> split from a splits file whose entries are group or case names."""
    case_to_group = {c: g for g, cs in groups.items() for c in cs}
    out: dict[str, str] = {}
    for split, names in splits.items():
        for name in names:
            cases = groups.get(name) or ([name] if name in case_to_group else None)
            if cases is None:
                raise DataError(path, f"'{name}' ({split}) matches no case of the source")
            for c in cases:
                if c in out and out[c] != split:
                    raise DataError(path, f"case '{c}' is in both '{out[c]}' and '{split}'")
                out[c] = split
    missing = sorted(set(case_to_group) - set(out))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(path, f"{len(missing)} case(s) are in no split: {shown}")
    return out


def _load_simulator(density: float) -> Callable[..., np.ndarray]:
    if not 0.0 < density <= 1.0:
        raise DmspsError(f"--scribble-density must be in (0, 1], got {density}")
    try:
        from dmsps.data.scribble import simulate_scribble
    except ImportError:
        raise DmspsError(
            "--simulate-scribbles needs dmsps.data.scribble, which this installation lacks"
        ) from None
    return simulate_scribble


def _case_seed(seed: int, case: str) -> np.random.Generator:
    """Per-case generator: a case's simulated scribble does not depend on the other cases."""
    return np.random.default_rng([seed, zlib.crc32(case.encode())])


# === acdc-h5 ==========================================================================
def import_acdc_h5(
    src: str | Path,
    out: str | Path,
    *,
    spacing: Sequence[float] = ACDC_H5_SPACING,
    train_list: str | Path | None = None,
    val_list: str | Path | None = None,
    test_list: str | Path | None = None,
    all_train: bool = False,
    overwrite: bool = False,
    name: str = "ACDC",
    progress: bool = True,
) -> ImportResult:
    """Import WSL4MIS/DMSPS-style ACDC HDF5 volumes; see the module docstring."""
    src, out = Path(src), Path(out)
    if len(spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise DmspsError(f"--spacing needs three positive values in mm, got {list(spacing)}")
    sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
    vol_dir, list_dirs = _find_h5_volumes(src)
    volumes = {p.name[: -len(".h5")]: p for p in sorted(vol_dir.glob("*.h5")) if p.is_file()}

    explicit = {"train": train_list, "val": val_list, "test": test_list}
    roles: dict[str, str] = {}
    role_source: dict[str, Path] = {}
    for split, given in explicit.items():
        path = Path(given) if given else _default_list(list_dirs, split)
        if path is None:
            continue
        for case in _read_case_list(path):
            if case not in volumes:
                raise DataError(path, f"case '{case}' has no volume {vol_dir / (case + '.h5')}")
            if case in roles:
                raise DataError(
                    path, f"case '{case}' is also in {role_source[case].name} ({roles[case]})"
                )
            roles[case], role_source[case] = split, path
    unlisted = sorted(set(volumes) - set(roles))
    if unlisted and not all_train:
        shown = ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
        raise DataError(
            vol_dir,
            f"{len(unlisted)} volume(s) are in no train/val/test list ({shown}); add them "
            "to a list or pass --all-train to train on them",
        )
    for case in unlisted:
        roles[case] = "train"
    if not roles:
        raise DataError(vol_dir, "no .h5 volumes to import")

    prepare_output(out, [src, vol_dir], overwrite)
    meta = cardiac_meta(name)
    cases = [
        SourceCase(
            case,
            roles[case],
            lambda p=volumes[case], r=roles[case]: _load_h5_case(p, sp, r != "test", meta),
        )
        for case in sorted(roles)
    ]
    return write_dataset(out, meta, cases, progress, desc="import acdc-h5")


def _find_h5_volumes(src: Path) -> tuple[Path, list[Path]]:
    """(folder of .h5 volumes, folders to look for case lists in)."""
    if not src.is_dir():
        raise DmspsError(f"{src}: source folder not found")
    if (src / "volumes").is_dir():
        return src / "volumes", [src]
    if any(src.glob("*.h5")):
        return src, [src, src.parent]
    raise DataError(src, "holds no .h5 volumes (neither directly nor in volumes/)")


def _default_list(dirs: list[Path], split: str) -> Path | None:
    for d in dirs:
        p = d / f"{split}.txt"
        if p.is_file():
            return p
    return None


def _read_case_list(path: Path) -> list[str]:
    """Case names from a list file: one per line, '.h5' and folders stripped, '#' comments."""
    if not path.is_file():
        raise DataError(path, "case list not found")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read case list ({exc})") from None
    cases: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        case = Path(line).name
        case = case[: -len(".h5")] if case.endswith(".h5") else case
        if case in cases:
            raise DataError(path, f"case '{case}' is listed twice")
        cases.append(case)
    return cases


def _load_h5_case(
    path: Path, spacing: tuple[float, float, float], need_scribble: bool, meta: DatasetMeta
) -> CaseData:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(path, f"cannot read HDF5 file ({exc})") from None
    with f:
        required = ["image", "scribble"] if need_scribble else ["image"]
        missing = [k for k in required if k not in f]
        if missing:
            raise DataError(
                path,
                f"missing key(s) {', '.join(missing)} (found: {', '.join(sorted(f)) or 'none'})",
            )
        image = _h5_read(f, "image", path)
        label = _h5_read(f, "label", path) if "label" in f else None
        scribble = _h5_read(f, "scribble", path) if "scribble" in f else None
    if image.ndim == 2:
        image = image[None]
        label = None if label is None else label[None]
        scribble = None if scribble is None else scribble[None]
    if image.ndim != 3:
        raise DataError(path, f"'image' must be (slices, H, W), got shape {image.shape}")
    shape = tuple(image.shape)
    if label is not None:
        _same_shape(label, shape, path, "'label'")
        label = check_label(label, meta.num_classes, path)
    if scribble is not None:
        _same_shape(scribble, shape, path, "'scribble'")
        scribble = convert_scribble(scribble, meta.num_classes, meta.ignore_value, path)
    geom = Geometry.from_spacing(shape, spacing)  # type: ignore[arg-type]
    return CaseData(image.astype(np.float32)[None], geom, label, scribble, path)


def _h5_read(f, key: str, path: Path) -> np.ndarray:
    import h5py

    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(path, f"'{key}' is a group, expected an array")
    try:
        return np.asarray(obj[()])
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read '{key}' ({exc})") from None


# === acdc (official NIfTI) ============================================================
_ACDC_FRAME_RE = re.compile(r"^(?P<patient>patient\d+)_frame\d+$")


def import_acdc(
    src: str | Path,
    out: str | Path,
    *,
    scribbles: str | Path | None = None,
    scribble_unannotated: int = 4,
    scribble_map: dict[int, int] | None = None,
    splits_file: str | Path | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    simulate_scribbles: bool = False,
    scribble_density: float = 1.0,
    overwrite: bool = False,
    name: str = "ACDC",
    progress: bool = True,
) -> ImportResult:
    """Import the official ACDC NIfTI release plus scribble files; see the module docstring."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DmspsError(f"{src}: source folder not found")
    meta = cardiac_meta(name)
    value_map = scribble_map or {}
    check_unannotated(scribble_unannotated, meta.num_classes, value_map)
    frames = _acdc_frames(src)
    scribble_dir = Path(scribbles) if scribbles else None
    if scribble_dir is not None and not scribble_dir.is_dir():
        raise DmspsError(f"{scribble_dir}: scribble folder not found")
    scribble_files = _index_by_stem(
        [scribble_dir] if scribble_dir else sorted({p.parent for p in frames.values()}),
        recursive=scribble_dir is not None,
    )

    groups: dict[str, list[str]] = {}
    for case in frames:
        groups.setdefault(_ACDC_FRAME_RE.match(case)["patient"], []).append(case)  # type: ignore[index]
    if splits_file:
        roles = assign_from_splits(Path(splits_file), read_splits_file(Path(splits_file)), groups)
    else:
        roles = random_split(groups, val_fraction, test_fraction, seed)

    simulate = _load_simulator(scribble_density) if simulate_scribbles else None
    for case, path in frames.items():
        gt = _acdc_gt(path)
        if gt is None:
            raise DataError(
                path.parent / f"{case}_gt.nii.gz", f"missing ground truth of frame '{case}'"
            )
        if roles[case] != "test" and f"{case}_scribble" not in scribble_files and not simulate:
            where = scribble_dir or path.parent
            raise DataError(
                where / f"{case}_scribble.nii.gz",
                f"missing scribble of {roles[case]} case '{case}' (use --scribbles DIR, or "
                "--simulate-scribbles to draw them from the ground truth)",
            )

    prepare_output(out, [src, *([scribble_dir] if scribble_dir else [])], overwrite)

    def load(case: str) -> CaseData:
        image_path = frames[case]
        gt_path = _acdc_gt(image_path)
        assert gt_path is not None
        return _load_nifti_case(
            case,
            [image_path],
            gt_path,
            scribble_files.get(f"{case}_scribble"),
            meta,
            scribble_unannotated,
            value_map,
            simulate if roles[case] != "test" else None,
            scribble_density,
            seed,
        )

    cases = [SourceCase(c, roles[c], lambda c=c: load(c)) for c in sorted(frames)]
    return write_dataset(out, meta, cases, progress, desc="import acdc")


def _acdc_frames(src: Path) -> dict[str, Path]:
    """Frame name -> image path for every patient folder (also under training/, testing/)."""
    patient_dirs = [d for d in sorted(src.glob("patient*")) if d.is_dir()]
    if not patient_dirs:
        patient_dirs = [
            d
            for sub in ("training", "testing")
            for d in sorted(src.glob(f"{sub}/patient*"))
            if d.is_dir()
        ]
    if not patient_dirs:
        raise DataError(src, "holds no patientNNN folders (nor training/ or testing/ with them)")
    frames: dict[str, Path] = {}
    for d in patient_dirs:
        for p in sorted(d.iterdir()):
            stem = strip_ending(p.name)
            if p.is_file() and stem != p.name and _ACDC_FRAME_RE.match(stem):
                if stem in frames:
                    raise DataError(p, f"frame '{stem}' also found at {frames[stem]}")
                frames[stem] = p
    if not frames:
        raise DataError(src, "no patientNNN_frameMM.nii.gz images found in the patient folders")
    return frames


def _acdc_gt(image_path: Path) -> Path | None:
    stem = strip_ending(image_path.name)
    for ending in NIFTI_ENDINGS:
        p = image_path.parent / f"{stem}_gt{ending}"
        if p.is_file():
            return p
    return None


def _index_by_stem(folders: Sequence[Path], recursive: bool) -> dict[str, Path]:
    """Stem -> NIfTI path; the same stem twice is an error (which one would be meant?)."""
    out: dict[str, Path] = {}
    for folder in folders:
        paths = folder.rglob("*") if recursive else folder.iterdir()
        for p in sorted(paths):
            stem = strip_ending(p.name)
            if not p.is_file() or stem == p.name or p.name.startswith("."):
                continue
            if stem in out and out[stem] != p:
                raise DataError(p, f"ambiguous: {out[stem]} has the same name")
            out[stem] = p
    return out


def _load_nifti_case(
    case: str,
    image_paths: list[Path],
    label_path: Path | None,
    scribble_path: Path | None,
    meta: DatasetMeta,
    unannotated: int,
    value_map: dict[int, int],
    simulate: Callable[..., np.ndarray] | None,
    density: float,
    seed: int,
) -> CaseData:
    """Load channels, label and scribble of one case on the first channel's grid."""
    channels = []
    geom: Geometry | None = None
    for p in image_paths:
        arr, g = load_volume(p, np.float32)
        if geom is None:
            geom = g
        else:
            _same_grid(g, geom, p, "channel")
        channels.append(arr)
    assert geom is not None
    label = None
    if label_path is not None:
        arr, g = load_volume(label_path, np.float32)
        _same_grid(g, geom, label_path, "label")
        label = check_label(arr, meta.num_classes, label_path)
    scribble = None
    source = scribble_path
    if scribble_path is not None:
        arr, g = load_volume(scribble_path, np.float32)
        _same_grid(g, geom, scribble_path, "scribble")
        scribble = convert_scribble(arr, meta.num_classes, unannotated, scribble_path, value_map)
    elif simulate is not None and label is not None:
        scribble = simulate(label, meta.num_classes, density=density, rng=_case_seed(seed, case))
        source = label_path
    return CaseData(np.stack(channels), geom, label, scribble, source)


# === nifti (users' own data) ==========================================================
def import_nifti(
    images: str | Path,
    out: str | Path,
    *,
    labels: str | Path | None = None,
    scribbles: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    channel_names: Sequence[str] | None = None,
    ignore_value: int | None = None,
    scribble_map: dict[int, int] | None = None,
    splits_file: str | Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    channel_suffix: bool = True,
    simulate_scribbles: bool = False,
    scribble_density: float = 1.0,
    overwrite: bool = False,
    name: str | None = None,
    progress: bool = True,
) -> ImportResult:
    """Import a folder of NIfTI images with matching labels/scribbles (module docstring).

    Cases with a scribble (given or simulated) are split into train/val/test by the
    fractions; cases without one can only be evaluated, so they go to the test split.
    """
    images, out = Path(images), Path(out)
    label_dir = Path(labels) if labels else None
    scribble_dir = Path(scribbles) if scribbles else None
    for d in (images, label_dir, scribble_dir):
        if d is not None and not d.is_dir():
            raise DmspsError(f"{d}: folder not found")
    shared = {d.resolve() for d in (label_dir, scribble_dir) if d is not None}
    exclude = (
        LABEL_SUFFIXES + SCRIBBLE_SUFFIXES if images.resolve() in shared else ()
    )  # single-folder layout: suffixed files are labels/scribbles, not images
    case_images = _nifti_image_cases(images, channel_suffix, exclude)
    warnings: list[str] = []
    label_files = (
        _match_files(
            label_dir,
            case_images,
            LABEL_SUFFIXES,
            label_dir.resolve() == images.resolve(),
            warnings,
            "label",
        )
        if label_dir
        else {}
    )
    scribble_files = (
        _match_files(
            scribble_dir,
            case_images,
            SCRIBBLE_SUFFIXES,
            scribble_dir.resolve() == images.resolve(),
            warnings,
            "scribble",
        )
        if scribble_dir
        else {}
    )
    simulate = _load_simulator(scribble_density) if simulate_scribbles else None

    meta = _nifti_meta(
        name or out.name,
        class_names,
        channel_names,
        len(next(iter(case_images.values()))),
        label_files,
        progress,
    )
    C = meta.num_classes
    unannotated = C if ignore_value is None else int(ignore_value)
    value_map = scribble_map or {}
    check_unannotated(unannotated, C, value_map)

    trainable = sorted(
        c for c in case_images if c in scribble_files or (simulate and c in label_files)
    )
    if not trainable:
        raise DmspsError(
            f"{images}: no case has a scribble"
            + (f" in {scribble_dir}" if scribble_dir else " (no --scribbles folder given)")
            + "; cannot train. Give --scribbles, or --simulate-scribbles with --labels"
        )
    if splits_file:
        groups = {c: [c] for c in case_images}
        roles = assign_from_splits(Path(splits_file), read_splits_file(Path(splits_file)), groups)
        for c, r in roles.items():
            if r != "test" and c not in trainable:
                raise DataError(
                    Path(splits_file),
                    f"{r} case '{c}' has no scribble (and none can be simulated)",
                )
    else:
        roles = random_split({c: [c] for c in trainable}, val_fraction, test_fraction, seed)
        roles.update({c: "test" for c in case_images if c not in trainable})

    sources = [images, *(d for d in (label_dir, scribble_dir) if d is not None)]
    prepare_output(out, sources, overwrite)

    def load(case: str) -> CaseData:
        return _load_nifti_case(
            case,
            case_images[case],
            label_files.get(case),
            scribble_files.get(case),
            meta,
            unannotated,
            value_map,
            simulate if roles[case] != "test" else None,
            scribble_density,
            seed,
        )

    cases = [SourceCase(c, roles[c], lambda c=c: load(c)) for c in sorted(case_images)]
    result = write_dataset(out, meta, cases, progress, desc="import nifti")
    result.warnings[:0] = warnings
    return result


def _nifti_image_cases(
    folder: Path, channel_suffix: bool, exclude_suffixes: tuple[str, ...]
) -> dict[str, list[Path]]:
    """Case -> channel image paths, checking channels run _0000.._000N for every case."""
    channels: dict[str, dict[int, Path]] = {}
    plain: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = strip_ending(p.name)
        if not p.is_file() or stem == p.name or p.name.startswith("."):
            continue
        if exclude_suffixes and stem.endswith(exclude_suffixes):
            continue
        m = _CHANNEL_RE.match(stem) if channel_suffix else None
        if m:
            ch = channels.setdefault(m["case"], {})
            if int(m["channel"]) in ch:
                raise DataError(p, f"ambiguous: {ch[int(m['channel'])]} is the same channel")
            ch[int(m["channel"])] = p
        else:
            if stem in plain:
                raise DataError(p, f"ambiguous: {plain[stem]} has the same case name")
            plain[stem] = p
    cases: dict[str, list[Path]] = {}
    for case, p in plain.items():
        if case in channels:
            raise DataError(
                p,
                f"case '{case}' also has channel files like {channels[case][min(channels[case])]}",
            )
        cases[case] = [p]
    for case, ch in channels.items():
        expected = list(range(len(ch)))
        if sorted(ch) != expected:
            first_bad = min(set(ch) ^ set(expected))
            path = ch.get(first_bad, folder / f"{case}_{first_bad:04d}.nii.gz")
            raise DataError(
                path,
                f"channels of case '{case}' must be numbered _0000.._{len(ch) - 1:04d}, got "
                f"{', '.join(f'_{c:04d}' for c in sorted(ch))} (pass --no-channel-suffix if "
                "the number is part of the case name)",
            )
        cases[case] = [ch[c] for c in expected]
    if not cases:
        raise DataError(folder, "holds no NIfTI images (.nii.gz or .nii)")
    counts = {len(v) for v in cases.values()}
    if len(counts) > 1:
        n0 = len(next(iter(cases.values())))
        odd = next(c for c, v in sorted(cases.items()) if len(v) != n0)
        raise DataError(
            cases[odd][0],
            f"case '{odd}' has {len(cases[odd])} channel(s), other cases {n0}; every case "
            "needs the same channels",
        )
    return dict(sorted(cases.items()))


def _match_files(
    folder: Path,
    cases: dict[str, list[Path]],
    suffixes: tuple[str, ...],
    same_as_images: bool,
    warnings: list[str],
    kind: str,
) -> dict[str, Path]:
    """Case -> label/scribble path by the naming rule; unmatched files become warnings."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = strip_ending(p.name)
        if not p.is_file() or stem == p.name or p.name.startswith("."):
            continue
        case = None
        for suffix in suffixes:
            if stem.endswith(suffix) and stem[: -len(suffix)] in cases:
                case = stem[: -len(suffix)]
                break
        if case is None and not same_as_images and stem in cases:
            case = stem
        if case is None:
            if not same_as_images or stem.endswith(suffixes):
                warnings.append(f"{p}: warning: {kind} matches no image; ignored")
            continue
        if case in found:
            raise DataError(p, f"ambiguous: {found[case]} is also the {kind} of case '{case}'")
        found[case] = p
    return found


def _nifti_meta(
    name: str,
    class_names: Sequence[str] | None,
    channel_names: Sequence[str] | None,
    num_channels: int,
    label_files: dict[str, Path],
    progress: bool,
) -> DatasetMeta:
    if class_names:
        names = [n.strip() for n in class_names]
        if len(names) < 2 or len(set(names)) != len(names) or "" in names or "ignore" in names:
            raise DmspsError(
                "--class-names needs at least two distinct, non-empty names other than 'ignore'"
            )
    else:
        if not label_files:
            raise DmspsError("without labels, give the classes with --class-names")
        top = _max_label(label_files, progress)
        if top < 1:
            raise DmspsError("labels hold only background (0); give the classes with --class-names")
        names = ["background", *(f"class{i}" for i in range(1, top + 1))]
    if len(names) > 255:
        raise DmspsError(f"{len(names)} classes; at most 255 are supported")
    if channel_names:
        chans = [c.strip() for c in channel_names]
        if len(chans) != num_channels:
            raise DmspsError(
                f"--channel-names lists {len(chans)} names, images have {num_channels} channel(s)"
            )
    else:
        chans = ["image"] if num_channels == 1 else [f"image{i}" for i in range(num_channels)]
    labels = {n: i for i, n in enumerate(names)}
    labels["ignore"] = len(names)
    return DatasetMeta(name=name, channel_names=chans, labels=labels)


def _max_label(label_files: dict[str, Path], progress: bool) -> int:
    """Largest label value over all label files: the class count when none is given."""
    from tqdm import tqdm

    top = 0
    for path in tqdm(
        list(label_files.values()),
        desc="scan labels",
        unit="file",
        disable=not progress,
        leave=False,
    ):
        arr, _ = load_volume(path, np.float32)
        if arr.size:
            top = max(top, int(_as_integer_map(arr, path, "label").max()))
    return top


def print_warnings(result: ImportResult) -> None:
    for line in result.warnings:
        print(line, file=sys.stderr)
