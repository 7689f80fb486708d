"""``dmsps import acdc-h5``: the ACDC HDF5 volumes published with WSL4MIS and used by DMSPS.

``volumes/<case>.h5`` with keys ``image``, ``label``, ``scribble`` (4 = unannotated) and
``train.txt``/``val.txt``/``test.txt`` case lists. The files carry no voxel spacing, so it
is given with ``spacing`` (default 10 x 1.5 x 1.5 mm).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dmsps.data.importers.common import (
    CaseData,
    Importer,
    ImportResult,
    SourceCase,
    _same_shape,
    add_out_arguments,
    out_options,
    prepare_output,
    write_dataset,
)
from dmsps.data.labels import check_label, convert_scribble
from dmsps.data.layout import DatasetMeta, cardiac_meta
from dmsps.errors import DataError, DmspsError, listing
from dmsps.io.nifti import Geometry

#: ACDC through-plane x in-plane spacing assumed for the HDF5 volumes, in mm (sz, sy, sx).
ACDC_H5_SPACING = (10.0, 1.5, 1.5)

DESCRIPTION = """\
Import ACDC HDF5 volumes: SRC/volumes/<case>.h5 (or SRC itself holding the .h5 files),
each with 'image' (slices, H, W) float, 'label' (dense ground truth 0..3, optional) and
'scribble' (0..3 annotated, 4 = unannotated; required for train and val cases).
Intensities are kept as they are.

Splits come from case lists, one name per line ('.h5' optional): --train-list,
--val-list, --test-list, by default train.txt, val.txt and test.txt beside volumes/
(or in SRC's parent when SRC is the volumes folder). A volume in no list is an error
unless --all-train. Test cases go to imagesTs/labelsTs.

The HDF5 files carry no voxel spacing: it is set with --spacing (default 10 1.5 1.5
mm). Real ACDC in-plane spacing is 1.37-1.68 mm and slice thickness 5-10 mm, so
distances in mm (HD95, ASD) are approximate; use the `acdc` format with the official
NIfTI files for exact spacing.
"""


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
        shown = listing(unlisted, 5)
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", type=Path, help="folder holding volumes/ and lists")
    add_out_arguments(p, default_name="ACDC")
    p.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("SZ", "SY", "SX"),
        default=list(ACDC_H5_SPACING),
        help="voxel spacing in mm, slices first (the HDF5 files carry none; default 10 1.5 1.5)",
    )
    p.add_argument(
        "--train-list", type=Path, metavar="FILE", help="train case list (default SRC/train.txt)"
    )
    p.add_argument(
        "--val-list", type=Path, metavar="FILE", help="validation case list (default SRC/val.txt)"
    )
    p.add_argument(
        "--test-list", type=Path, metavar="FILE", help="test case list (default SRC/test.txt)"
    )
    p.add_argument("--all-train", action="store_true", help="volumes in no list become train cases")


def run(args: argparse.Namespace) -> ImportResult:
    result = import_acdc_h5(
        args.src,
        args.out,
        spacing=args.spacing,
        train_list=args.train_list,
        val_list=args.val_list,
        test_list=args.test_list,
        all_train=args.all_train,
        **out_options(args),
    )
    return result


IMPORTER = Importer(
    name="acdc-h5",
    help="ACDC HDF5 volumes with scribbles (WSL4MIS / DMSPS release)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
