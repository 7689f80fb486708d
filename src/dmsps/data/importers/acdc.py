"""``dmsps import acdc``: the official ACDC NIfTI release plus scribble files.

``<SRC>/patientNNN/patientNNN_frameMM.nii.gz`` and ``..._gt.nii.gz``, plus scribble files
``patientNNN_frameMM_scribble.nii.gz``. Real spacing and affine are kept. Splits are
patient-level, so the two frames of a patient never land in different splits.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dmsps.data.importers.common import (
    CaseData,
    Importer,
    ImportResult,
    ScribbleOptions,
    SourceCase,
    add_out_arguments,
    add_scribble_arguments,
    add_split_arguments,
    assign_from_splits,
    index_by_stem,
    load_nifti_case,
    out_options,
    prepare_output,
    random_split,
    read_splits_file,
    scribble_options,
    split_options,
    write_dataset,
)
from dmsps.data.labels import check_unannotated
from dmsps.data.layout import cardiac_meta
from dmsps.errors import DataError, DmspsError
from dmsps.io.nifti import NIFTI_ENDINGS, strip_ending

DESCRIPTION = """\
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
    slice_step: int = 1,
    background_strokes: int = 1,
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
    scribble_files = index_by_stem(
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

    opts = ScribbleOptions(
        unannotated=scribble_unannotated,
        value_map=value_map,
        simulate=simulate_scribbles,
        density=scribble_density,
        slice_step=slice_step,
        seed=seed,
        background_regions=background_strokes,
    )
    simulate = opts.simulator() is not None
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
        return load_nifti_case(
            case,
            [image_path],
            gt_path,
            scribble_files.get(f"{case}_scribble"),
            meta,
            opts,
            simulate=simulate and roles[case] != "test",
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", type=Path, help="folder holding patientNNN/ folders")
    add_out_arguments(p, default_name="ACDC")
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
    add_scribble_arguments(p)
    add_split_arguments(p, val=0.15, test=0.15)


def run(args: argparse.Namespace) -> ImportResult:
    return import_acdc(
        args.src,
        args.out,
        scribbles=args.scribbles,
        scribble_unannotated=args.scribble_unannotated,
        **scribble_options(args),
        **split_options(args),
        **out_options(args),
    )


IMPORTER = Importer(
    name="acdc",
    help="official ACDC NIfTI release plus scribble NIfTI files",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
