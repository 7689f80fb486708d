"""``dmsps import brats2020``: the BraTS 2020 training data (369 glioma cases).

``<SRC>/BraTS20_Training_NNN/BraTS20_Training_NNN_{t1,t1ce,t2,flair,seg}.nii.gz``. The
four MRI sequences become four channels named t1, t1ce, t2, flair, which makes training
normalise each with a z-score over the brain (non-zero voxels) clipped at the 99.9th
percentile, as the DMSPS authors did. Their two classes are kept: tumour core (BraTS
labels 1, necrosis, and 4, enhancing tumour) and edema (label 2).

The volumes are skull-stripped onto a 240 x 240 x 155 grid that is mostly zero, so every
case is cropped to the bounding box of its non-zero voxels over the four sequences; the
affine moves with it. The release has no official split and no scribbles: the split is
drawn at case level (the authors' 70/15/15 by default), and train and val cases get
scribbles simulated from their labels unless a scribble file is given. The paper's BraTS
scribbles came from the authors' generator, so that is the default style here
(``dmsps.data.authors_scribbles``); ours is ``scribble_style="dmsps"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dmsps.data.importers.common import (
    CaseData,
    Importer,
    ImportResult,
    ScribbleOptions,
    SourceCase,
    SourceValues,
    add_out_arguments,
    add_scribble_arguments,
    add_split_arguments,
    assign_from_splits,
    find_scribble_files,
    load_nifti_case,
    out_options,
    prepare_output,
    random_split,
    read_splits_file,
    scribble_options,
    split_options,
    write_dataset,
)
from dmsps.data.layout import DatasetMeta
from dmsps.errors import DataError, DmspsError
from dmsps.io.nifti import NIFTI_ENDINGS, strip_ending

#: Channel order and names (the names choose the normalisation).
MODALITIES = ("t1", "t1ce", "t2", "flair")

#: BraTS label values -> our classes: 1 (necrosis) and 4 (enhancing) are tumour core.
BRATS_LABEL_MAP = {1: 1, 4: 1, 2: 2}
BRATS_VALUES = (0, 1, 2, 4)

#: The folder the release unpacks to; SRC may be its parent.
RELEASE_FOLDER = "MICCAI_BraTS2020_TrainingData"

#: The DMSPS authors' split (code/dataloader/preprocess_BraTS2020.py: 70/15/15 %).
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15

DESCRIPTION = f"""\
Import the BraTS 2020 training data: SRC/BraTS20_Training_NNN/ folders, each holding
BraTS20_Training_NNN_t1, _t1ce, _t2, _flair and _seg (.nii.gz or .nii); SRC may also
be the parent of {RELEASE_FOLDER}/.

Channels: t1, t1ce, t2, flair, in this order; training normalises each with a z-score
over non-zero voxels, clipped at the 99.9th percentile. Classes: background 0,
tumour_core 1 (BraTS labels 1 and 4), edema 2 (BraTS label 2); seg values other than
0, 1, 2, 4 are an error. Every case is cropped to the bounding box of the voxels that
are non-zero in any of the four sequences; the affine moves with it, so the volumes
stay in place in world space.

Splits: --splits FILE, a JSON object {{"train": [...], "val": [...], "test": [...]}} of
case names; by default a random case-level split by --val-fraction and --test-fraction
(--seed), 70/15/15 % as in the DMSPS authors' preprocess_BraTS2020.py (their lists were
drawn without a seed and are not published, so the cases differ).

Scribbles: --scribbles DIR with <case>.nii.gz or <case>_scribble.nii.gz files in BraTS
label values, with --scribble-unannotated V (default 255) on unannotated voxels. A train
or val case without a scribble file gets one simulated from its label, slice by slice
(--slice-step N: every N-th slice only; --seed seeds them too), by default in the style
of the DMSPS authors' generator, which made the paper's BraTS scribbles
(--scribble-style authors: per slice and class the skeleton of the eroded region, one
random path through it, 3 pixels wide, slightly shifted and turned; the background's
whole skeleton); --scribble-style dmsps draws ours (--scribble-density shortens its
strokes). Test cases get no scribbles.
"""


def import_brats2020(
    src: str | Path,
    out: str | Path,
    *,
    scribbles: str | Path | None = None,
    scribble_unannotated: int = 255,
    splits_file: str | Path | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    scribble_density: float = 1.0,
    slice_step: int = 1,
    background_strokes: int = 1,
    scribble_style: str = "authors",
    authors_erosion: tuple[int, int] = (1, 7),
    overwrite: bool = False,
    name: str = "BraTS2020",
    progress: bool = True,
) -> ImportResult:
    """Import the BraTS 2020 training data; see the module docstring."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DmspsError(f"{src}: source folder not found")
    if scribble_unannotated in BRATS_VALUES:
        raise DmspsError(
            f"--scribble-unannotated {scribble_unannotated} is a BraTS label value (0, 1, 2, "
            "4); give the value that marks unannotated voxels in the scribble files"
        )
    meta = DatasetMeta(
        name=name,
        channel_names=list(MODALITIES),
        labels={"background": 0, "tumour_core": 1, "edema": 2, "ignore": 3},
    )
    warnings: list[str] = []
    files = _brats_cases(src, warnings)
    groups = {c: [c] for c in files}
    if splits_file:
        roles = assign_from_splits(Path(splits_file), read_splits_file(Path(splits_file)), groups)
    else:
        roles = random_split(groups, val_fraction, test_fraction, seed)
    scribble_dir = Path(scribbles) if scribbles else None
    scribble_files = (
        find_scribble_files(scribble_dir, {c for c, r in roles.items() if r != "test"}, warnings)
        if scribble_dir
        else {}
    )
    opts = ScribbleOptions(
        unannotated=scribble_unannotated,
        value_map={},
        simulate=True,
        density=scribble_density,
        slice_step=slice_step,
        seed=seed,
        background_regions=background_strokes,
        style=scribble_style,
        erosion=authors_erosion,
    )
    opts.simulator()  # checks density and slice step before anything is written

    prepare_output(out, [src, *([scribble_dir] if scribble_dir else [])], overwrite)

    def load(case: str) -> CaseData:
        images, seg = files[case]
        scribble_path = scribble_files.get(case)
        return load_nifti_case(
            case,
            images,
            seg,
            scribble_path,
            meta,
            opts,
            simulate=roles[case] != "test",
            label_map=BRATS_LABEL_MAP,
            crop=_brain_box,
            known=SourceValues(frozenset(BRATS_VALUES), "BraTS labels (0, 1, 2, 4)"),
        )

    cases = [SourceCase(c, roles[c], lambda c=c: load(c)) for c in sorted(files)]
    result = write_dataset(out, meta, cases, progress, desc="import brats2020")
    result.warnings[:0] = warnings
    return result


def _brain_box(image: np.ndarray, label: np.ndarray | None) -> tuple[slice, ...]:
    """Bounding box of voxels non-zero in any of the four sequences."""
    from dmsps.data.cache import nonzero_box

    return nonzero_box(image)


def _brats_cases(src: Path, warnings: list[str]) -> dict[str, tuple[list[Path], Path]]:
    """Case -> (t1, t1ce, t2, flair paths; seg path) for every case folder."""
    root = src / RELEASE_FOLDER if (src / RELEASE_FOLDER).is_dir() else src
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.startswith("BraTS")]
    if not folders:
        raise DataError(
            src, f"holds no BraTS20_Training_NNN folders (nor {RELEASE_FOLDER}/ with them)"
        )
    cases: dict[str, tuple[list[Path], Path]] = {}
    for folder in folders:
        case = folder.name
        found = {
            strip_ending(p.name): p
            for p in sorted(folder.iterdir())
            if p.is_file() and strip_ending(p.name) != p.name and not p.name.startswith(".")
        }
        ending = next(
            (e for p in found.values() for e in NIFTI_ENDINGS if p.name.endswith(e)),
            NIFTI_ENDINGS[0],
        )
        paths = {}
        for kind in (*MODALITIES, "seg"):
            path = _one_file(folder, f"{case}_{kind}")
            if path is None and kind == "seg":
                path = _renamed_seg(folder, found, warnings)
            if path is None:
                what = "segmentation" if kind == "seg" else f"{kind} image"
                hint = ""
                if kind == "seg" and "Training" not in case:
                    # BraTS's validation release ships no segmentations at all.
                    hint = (
                        "; BraTS's validation data has none: import the training data "
                        "(MICCAI_BraTS2020_TrainingData), and segment these cases with "
                        "`dmsps predict`"
                    )
                raise DataError(
                    folder / f"{case}_{kind}{ending}", f"missing {what} of '{case}'{hint}"
                )
            paths[kind] = path
        cases[case] = ([paths[m] for m in MODALITIES], paths["seg"])
    return cases


def _one_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii``; both at once is ambiguous."""
    present = [folder / f"{stem}{e}" for e in NIFTI_ENDINGS if (folder / f"{stem}{e}").is_file()]
    if len(present) > 1:
        raise DataError(present[1], f"ambiguous: {present[0]} is the same file")
    return present[0] if present else None


def _renamed_seg(folder: Path, found: dict[str, Path], warnings: list[str]) -> Path | None:
    """A seg under another name (BraTS20_Training_355's is W39_1998.09.19_Segm.nii).

    Taken only when it is the one file in the folder that is neither a sequence of the case
    nor named like one, and its name ends in 'seg' or 'segm'.
    """
    case = folder.name
    others = [
        p
        for stem, p in found.items()
        if stem not in {f"{case}_{m}" for m in MODALITIES}
        and stem.lower().endswith(("seg", "segm"))
    ]
    if len(others) != 1:
        return None
    warnings.append(f"{others[0]}: warning: taken as the segmentation of '{case}'")
    return others[0]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src",
        metavar="SRC",
        type=Path,
        help=f"folder holding BraTS20_Training_NNN/ folders (or {RELEASE_FOLDER}/)",
    )
    add_out_arguments(p, default_name="BraTS2020")
    p.add_argument(
        "--scribbles",
        type=Path,
        metavar="DIR",
        help="folder with <case>.nii.gz or <case>_scribble.nii.gz scribbles in BraTS values",
    )
    p.add_argument(
        "--scribble-unannotated",
        type=int,
        default=255,
        metavar="V",
        help="value marking unannotated voxels in the scribble files (default 255)",
    )
    add_scribble_arguments(p, value_map=False, simulate_flag=False, style="authors")
    add_split_arguments(p, val=VAL_FRACTION, test=TEST_FRACTION)


def run(args: argparse.Namespace) -> ImportResult:
    return import_brats2020(
        args.src,
        args.out,
        scribbles=args.scribbles,
        scribble_unannotated=args.scribble_unannotated,
        **scribble_options(args),
        **split_options(args),
        **out_options(args),
    )


IMPORTER = Importer(
    name="brats2020",
    help="BraTS 2020 training data (4 MRI sequences; tumour core, edema), scribbles simulated "
    "as the paper's were",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
