"""`dmsps import FORMAT ...`: convert a source dataset into the dmsps layout."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import"
HELP = "convert a dataset (ACDC HDF5, ACDC NIfTI, your own NIfTI files) into the dmsps layout"
DESCRIPTION = """\
Convert a dataset into the dmsps layout (nnU-Net v2 raw layout plus scribblesTr/, with
dataset.json and splits.json). Run `dmsps import FORMAT --help` for each format:

  acdc-h5   ACDC HDF5 volumes with scribbles (WSL4MIS / DMSPS release)
  acdc      official ACDC NIfTI release plus scribble NIfTI files
  nifti     your own folder(s) of NIfTI images, labels and/or scribbles

Importers never write into the source, refuse a non-empty OUT unless --overwrite, and
write dataset.json last (a folder without it is an unfinished import). Afterwards run
`dmsps check-data OUT`.
"""

ACDC_H5_DESCRIPTION = """\
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

ACDC_DESCRIPTION = """\
Import the official ACDC NIfTI release: SRC/patientNNN/patientNNN_frameMM.nii.gz and
its ground truth patientNNN_frameMM_gt.nii.gz (also SRC/training/patientNNN and
SRC/testing/patientNNN); the 4D cine files (_4d) are ignored. Real spacing and the
affine are kept.

Scribbles: patientNNN_frameMM_scribble.nii.gz files, searched recursively in
--scribbles DIR, or beside the images when --scribbles is not given. They are required
for train and val cases. ACDC scribble releases differ in how they mark unannotated
voxels: Valvano et al.'s (used by WSL4MIS and DMSPS) uses 0..3 for background, RV,
Myo, LV and 4 for unannotated, the default of --scribble-unannotated. Other codings can
be converted with --scribble-map OLD:NEW,... (applied first); e.g. files with 0 =
unannotated and 1..4 = background, RV, Myo, LV need
  --scribble-unannotated 0 --scribble-map 1:0,2:1,3:2,4:3

Splits: --splits FILE, a JSON object {"train": [...], "val": [...], "test": [...]}
of patient names (patient001) or frame names (patient001_frame01), covering every
frame; by default a deterministic patient-level split (--val-fraction, --test-fraction,
--seed: 70/15/15 %), so both frames of a patient stay in one split.
"""

NIFTI_DESCRIPTION = """\
Import your own NIfTI files. Folders: --images, --labels, --scribbles; with SRC they
default to SRC/images (or imagesTr), SRC/labels (or labelsTr) and SRC/scribbles (or
scribblesTr), or to SRC itself for all three when SRC has no images folder.

Name matching:
  - a case is an image file name without its ending (.nii.gz or .nii);
  - image names ending in _0000, _0001, ... are the channels of one case
    (brain_0000.nii.gz + brain_0001.nii.gz = 2-channel case 'brain');
    --no-channel-suffix makes such numbers part of the case name instead;
  - the label of case X is X, X_gt, X_label or X_seg in the labels folder, its
    scribble X or X_scribble in the scribbles folder (same ending rules);
  - when labels/scribbles share the images folder, only suffixed names match.
Labels and scribbles must lie on the image's grid (same shape and spacing); the
image's affine is kept.

Classes: --class-names background,liver,... (written to dataset.json); by default
background, class1, ... up to the largest label value. Scribbles hold class numbers on
annotated voxels and --ignore-value (default: the number of classes C) elsewhere; it
is converted to dmsps' C.

Splits: cases with a scribble are split into train/val/test by --val-fraction and
--test-fraction (--seed); cases without one go to test (evaluation only), unless
--simulate-scribbles draws scribbles from their labels. --splits FILE gives the split
explicitly (JSON {"train": [...], "val": [...], "test": [...]} of case names).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "acdc-h5",
        help="ACDC HDF5 volumes (image/label/scribble)",
        description=ACDC_H5_DESCRIPTION,
        formatter_class=fmt,
    )
    p.add_argument("src", metavar="SRC", type=Path, help="folder holding volumes/ and lists")
    _add_out(p, default_name="ACDC")
    p.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("SZ", "SY", "SX"),
        default=[10.0, 1.5, 1.5],
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

    p = sub.add_parser(
        "acdc",
        help="official ACDC NIfTI release plus scribble files",
        description=ACDC_DESCRIPTION,
        formatter_class=fmt,
    )
    p.add_argument("src", metavar="SRC", type=Path, help="folder holding patientNNN/ folders")
    _add_out(p, default_name="ACDC")
    p.add_argument(
        "--scribbles", type=Path, metavar="DIR", help="folder with *_scribble.nii.gz files"
    )
    p.add_argument(
        "--scribble-unannotated",
        type=int,
        default=4,
        metavar="V",
        help="value marking unannotated voxels in the scribble files (default 4)",
    )
    _add_scribble_options(p)
    _add_split_options(p, val=0.15, test=0.15)

    p = sub.add_parser(
        "nifti",
        help="your own NIfTI images with labels and/or scribbles",
        description=NIFTI_DESCRIPTION,
        formatter_class=fmt,
    )
    p.add_argument(
        "src", metavar="SRC", type=Path, nargs="?", help="source folder (optional with --images)"
    )
    _add_out(p, default_name=None)
    p.add_argument("--images", type=Path, metavar="DIR", help="folder of image NIfTIs")
    p.add_argument("--labels", type=Path, metavar="DIR", help="folder of dense label NIfTIs")
    p.add_argument("--scribbles", type=Path, metavar="DIR", help="folder of scribble NIfTIs")
    p.add_argument(
        "--class-names",
        metavar="NAMES",
        help="comma-separated class names, background first (e.g. bg,liver)",
    )
    p.add_argument(
        "--channel-names", metavar="NAMES", help="comma-separated channel names (e.g. T1,T2)"
    )
    p.add_argument(
        "--ignore-value",
        type=int,
        metavar="V",
        help="value marking unannotated scribble voxels (default: number of classes)",
    )
    p.add_argument(
        "--no-channel-suffix",
        action="store_true",
        help="treat a trailing _NNNN as part of the case name, not a channel number",
    )
    _add_scribble_options(p)
    _add_split_options(p, val=0.2, test=0.0)


def _add_out(p: argparse.ArgumentParser, default_name: str | None) -> None:
    p.add_argument("out", metavar="OUT", type=Path, help="new dataset folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the dataset in a non-empty OUT (removes its dataset folders and files)",
    )
    p.add_argument(
        "--name",
        default=default_name,
        help=f"dataset name for dataset.json (default {default_name or 'the OUT folder name'})",
    )


def _add_scribble_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scribble-map",
        metavar="OLD:NEW,...",
        help="relabel scribble values before conversion, e.g. 1:0,2:1",
    )
    p.add_argument(
        "--simulate-scribbles",
        action="store_true",
        help="draw scribbles from the labels of train/val cases that have no scribble file",
    )
    p.add_argument(
        "--scribble-density",
        type=float,
        metavar="D",
        default=1.0,
        help="stroke length factor for --simulate-scribbles, in (0, 1] (default 1)",
    )


def _add_split_options(p: argparse.ArgumentParser, val: float, test: float) -> None:
    p.add_argument("--splits", type=Path, metavar="FILE", help="JSON file with the splits")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=val,
        metavar="F",
        help=f"share of validation (default {val})",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=test,
        metavar="F",
        help=f"share of test (default {test})",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the random split (default 0)"
    )


def _names(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def _nifti_folders(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    """--images/--labels/--scribbles, defaulting to SRC's subfolders (see --help)."""
    from dmsps.errors import DmspsError

    src: Path | None = args.src
    if args.images is None and src is None:
        raise DmspsError("give SRC or --images")
    if src is not None and not src.is_dir():
        raise DmspsError(f"{src}: source folder not found")

    def sub(names: tuple[str, ...]) -> Path | None:
        if src is None:
            return None
        return next((src / n for n in names if (src / n).is_dir()), None)

    images = args.images or sub(("images", "imagesTr"))
    single = images is None
    images = images or src
    labels = args.labels or sub(("labels", "labelsTr")) or (src if single else None)
    scribbles = args.scribbles or sub(("scribbles", "scribblesTr")) or (src if single else None)
    assert images is not None
    return images, labels, scribbles


def run(args: argparse.Namespace) -> int:
    from dmsps.data import importers as im

    if args.format == "acdc-h5":
        result = im.import_acdc_h5(
            args.src,
            args.out,
            spacing=args.spacing,
            train_list=args.train_list,
            val_list=args.val_list,
            test_list=args.test_list,
            all_train=args.all_train,
            overwrite=args.overwrite,
            name=args.name,
        )
    elif args.format == "acdc":
        result = im.import_acdc(
            args.src,
            args.out,
            scribbles=args.scribbles,
            scribble_unannotated=args.scribble_unannotated,
            scribble_map=im.parse_value_map(args.scribble_map),
            splits_file=args.splits,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            simulate_scribbles=args.simulate_scribbles,
            scribble_density=args.scribble_density,
            overwrite=args.overwrite,
            name=args.name,
        )
    else:
        images, labels, scribbles = _nifti_folders(args)
        result = im.import_nifti(
            images,
            args.out,
            labels=labels,
            scribbles=scribbles,
            class_names=_names(args.class_names),
            channel_names=_names(args.channel_names),
            ignore_value=args.ignore_value,
            scribble_map=im.parse_value_map(args.scribble_map),
            splits_file=args.splits,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            channel_suffix=not args.no_channel_suffix,
            simulate_scribbles=args.simulate_scribbles,
            scribble_density=args.scribble_density,
            overwrite=args.overwrite,
            name=args.name,
        )
    im.print_warnings(result)
    print(result.summary())
    return 0
