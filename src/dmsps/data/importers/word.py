"""``dmsps import word``: the WORD abdominal CT release (Luo et al. 2022).

``<SRC>/imagesTr/word_0001.nii.gz`` with ``labelsTr/word_0001.nii.gz``, and the same for
``imagesVal/labelsVal`` and ``imagesTs/labelsTs``: the folders are the official 100/20/30
split, so the split is taken from them rather than drawn again. WORD labels 16 organs; the
DMSPS paper segments seven of them, so by default the other nine become background (in
labels and in scribble files alike), and any subset can be chosen by name.

Abdominal CT volumes are mostly air and table around the body. The default crop keeps the
body's bounding box, found from the image alone, so that no label decides what a test case
looks like. The DMSPS authors cropped to the labelled organs plus 20 voxels instead, which
uses the answer at test time; it is available (``crop="labels"``) to reproduce their setting.

WORD ships scribbles of its train cases (``scribblesTr/<case>.nii.gz``, named like the
images): the ones the DMSPS paper trained on. They are used when that folder is there,
mapped with the labels' map as the authors' preprocessing does (organs not kept become
background strokes) and cropped like the image. The value marking their unannotated
voxels is not documented, so it is read off each file: the one value that is not a WORD
label, provided it is also the file's most frequent (or given). A train or val case
without a scribble file gets one simulated from its label (the release has none for val
cases); test cases get none. Intensities stay in HU: the channel is called "CT", so
training applies the CT window [-150, 250] HU.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
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
    find_scribble_files,
    index_by_stem,
    load_nifti_case,
    out_options,
    prepare_output,
    scribble_options,
    write_dataset,
)
from dmsps.data.layout import DatasetMeta
from dmsps.errors import DataError, DmspsError, listing
from dmsps.io.nifti import NIFTI_ENDINGS

#: WORD's label values (the release's dataset.json).
WORD_LABELS = {
    "liver": 1,
    "spleen": 2,
    "kidney_left": 3,
    "kidney_right": 4,
    "stomach": 5,
    "gallbladder": 6,
    "esophagus": 7,
    "pancreas": 8,
    "duodenum": 9,
    "colon": 10,
    "intestine": 11,
    "adrenal": 12,
    "rectum": 13,
    "bladder": 14,
    "head_of_femur_left": 15,
    "head_of_femur_right": 16,
}

#: The DMSPS paper's seven organs, in its class order (pancreas, WORD 8, becomes class 7).
PAPER_ORGANS = (
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "stomach",
    "gallbladder",
    "pancreas",
)

#: Source folders per split: the official 100/20/30 split.
WORD_SPLITS = {"train": "Tr", "val": "Val", "test": "Ts"}

#: The release's own scribbles of the train cases, named like the images.
RELEASE_SCRIBBLES = "scribblesTr"

CROPS = ("body", "labels", "none")

#: Width (voxels) of the simulated background stroke in the air around the body: one
#: sweep of the brush along the outline. Marking all of the air instead made ~80 % of the
#: demo's scribbled voxels trivial background, which dilutes the organ strokes in the
#: partial cross-entropy's mean so much that an organ can lose out at little cost
#: (docs/3d.md: the spleen called left kidney throughout a run).
AIR_BAND = 1

#: Body mask: voxels above this (HU) are tissue; air lies near -1000 HU, fat near -100.
BODY_HU = -500.0

#: Voxels kept around the body's bounding box.
BODY_MARGIN = 3

#: Voxels kept around the labelled organs with ``crop="labels"`` (the DMSPS authors' 20).
LABELS_MARGIN = 20

DESCRIPTION = f"""\
Import the WORD abdominal CT release (Luo et al. 2022) in its official layout:
SRC/imagesTr/word_0001.nii.gz with SRC/labelsTr/word_0001.nii.gz, and the same for
imagesVal/labelsVal and imagesTs/labelsTs (SRC may also be the folder holding that
one release folder). The folders give the splits: Tr -> train, Val -> val, Ts -> test
(officially 100/20/30). Intensities stay in HU; the channel is named CT, so training
applies the CT window [-150, 250] HU. Spacing and affine are kept.

Classes: --organs NAME,... keeps these WORD organs as classes 1..N in the given order;
every other label becomes background, in labels and scribbles alike. The default is the
DMSPS paper's seven: {",".join(PAPER_ORGANS)}
(WORD label 8, pancreas, becomes class 7). WORD's organs, labels 1..16:
{textwrap.fill(", ".join(WORD_LABELS), 86, initial_indent="  ", subsequent_indent="  ")}

Crop (--crop), applied to every case and moving the affine with it, so the volumes stay
in place in world space:
  body    (default) the bounding box of the body, from the image alone: the largest
          connected region above {BODY_HU:g} HU, plus {BODY_MARGIN} voxels;
  labels  the DMSPS authors' crop: the bounding box of the chosen organs' labels plus
          {LABELS_MARGIN} voxels on every side, test cases included. It uses the
          labels, i.e. the answer, at test time: only to reproduce the paper's setting;
  none    the whole volume.

Scribbles: WORD's own, SRC/scribblesTr/<case>.nii.gz (the train cases' scribbles the
DMSPS paper trained on), are used when that folder is there (--no-release-scribbles:
simulate instead); --scribbles DIR gives others, <case>.nii.gz or
<case>_scribble.nii.gz files. Both hold WORD label values, mapped like the labels;
the value on unannotated voxels is detected per file (the one value that is no WORD
label and is the file's most frequent), or given with --scribble-unannotated V.

A train or val case without a scribble file gets one simulated from its (mapped)
label, slice by slice (--slice-step N: every N-th slice only, --seed), in
--scribble-style dmsps (ours, default) or authors (the generator of the paper's
scribbles). Ours: --scribble-density shortens strokes; between seven organs the
background falls apart into many pieces (bowel, fat, muscle), so by default the 4
largest background pieces of a slice get a stroke each (--background-strokes), and a
stroke of --air-band voxels runs through the air around the patient, one sweep of the
brush along the outline (the box crop leaves air around the body that would otherwise
never be annotated; 'all' marks all of it, which drowns the organ strokes). The
authors' style draws the background's whole skeleton, air included, and ignores those
three options. Test cases get no scribbles.
"""


def import_word(
    src: str | Path,
    out: str | Path,
    *,
    organs: Sequence[str] | None = None,
    crop: str = "body",
    scribbles: str | Path | None = None,
    scribble_unannotated: int | None = None,
    release_scribbles: bool = True,
    scribble_density: float = 1.0,
    slice_step: int = 1,
    background_strokes: int = 4,
    air_band: int | None = AIR_BAND,
    scribble_style: str = "dmsps",
    authors_erosion: tuple[int, int] = (1, 7),
    seed: int = 0,
    overwrite: bool = False,
    name: str = "WORD",
    progress: bool = True,
) -> ImportResult:
    """Import the WORD release in its official layout; see the module docstring."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DmspsError(f"{src}: source folder not found")
    if crop not in CROPS:
        raise DmspsError(f"unknown crop '{crop}' (choose from {', '.join(CROPS)})")
    chosen = _organs(organs)
    classes = {organ: c for c, organ in enumerate(chosen, start=1)}
    meta = DatasetMeta(
        name=name,
        channel_names=["CT"],
        labels={"background": 0, **classes, "ignore": len(chosen) + 1},
    )
    if scribble_unannotated is not None and 0 <= scribble_unannotated <= max(WORD_LABELS.values()):
        raise DmspsError(
            f"--scribble-unannotated {scribble_unannotated} is a WORD label value (0..16); "
            "give the value that marks unannotated voxels in the scribble files"
        )
    root = _release_root(src)
    warnings: list[str] = []
    roles, files = _word_cases(root, warnings)
    scribble_dir = Path(scribbles) if scribbles else None
    released = root / RELEASE_SCRIBBLES
    if scribble_dir is None and release_scribbles and released.is_dir():
        scribble_dir = released
    scribble_files = (
        find_scribble_files(scribble_dir, {c for c, r in roles.items() if r != "test"}, warnings)
        if scribble_dir
        else {}
    )
    if scribble_dir == released:
        missing = sorted(c for c, r in roles.items() if r == "train" and c not in scribble_files)
        if missing:
            warnings.append(
                f"{released}: warning: no scribble of train case(s) {listing(missing, 5)}; "
                "simulated from the labels"
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
    if air_band is not None and air_band < 0:
        raise DmspsError(f"--air-band must be 0 or more voxels, or 'all', got {air_band}")
    label_map = {WORD_LABELS[organ]: c for organ, c in classes.items()}
    known = SourceValues(frozenset({0, *WORD_LABELS.values()}), "WORD labels (0..16)")
    crop_box = {"body": body_box, "labels": labels_box, "none": None}[crop]

    prepare_output(out, [src, *([scribble_dir] if scribble_dir else [])], overwrite)

    def load(case: str) -> CaseData:
        image_path, label_path = files[case]
        scribble_path = scribble_files.get(case)
        data = load_nifti_case(
            case,
            [image_path],
            label_path,
            scribble_path,
            meta,
            opts,
            simulate=roles[case] != "test",
            label_map=label_map,
            crop=crop_box,
            known=known,
        )
        if scribble_path is None and data.scribble is not None and scribble_style == "dmsps":
            data.scribble = air_loop(data.image[0], data.scribble, meta.ignore_value, air_band)
        return data

    cases = [SourceCase(c, roles[c], lambda c=c: load(c)) for c in sorted(files)]
    result = write_dataset(out, meta, cases, progress, desc="import word")
    result.warnings[:0] = warnings
    return result


def body_box(image: np.ndarray, label: np.ndarray | None = None) -> tuple[slice, ...]:
    """Bounding box (Z, Y, X) of the body in a CT image (C, Z, Y, X), from HU alone.

    The body is the largest 3D connected region above ``BODY_HU`` (so table fragments,
    noise and air are left out), widened by ``BODY_MARGIN`` voxels; all of the volume
    when nothing is that dense.
    """
    from scipy import ndimage as ndi

    components, n = ndi.label(image[0] > BODY_HU)
    if n == 0:
        return tuple(slice(0, s) for s in image.shape[1:])
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    box = ndi.find_objects(components, max_label=int(sizes.argmax()))[-1]
    return tuple(
        slice(max(b.start - BODY_MARGIN, 0), min(b.stop + BODY_MARGIN, s))
        for b, s in zip(box, image.shape[1:], strict=True)
    )


def air_loop(
    image: np.ndarray, scribble: np.ndarray, ignore: int, band: int | None = AIR_BAND
) -> np.ndarray:
    """Mark the air around the patient as background in simulated scribbles.

    Annotators of CT leave the air to a threshold or one sweep of the brush: it is
    background and trivially so. Without it the air that the box crop leaves around the
    body is never annotated, and a network readily calls it stomach, the one labelled
    organ that holds gas. A band of ``band`` voxels starting 2 voxels outside the body
    (the largest component above ``BODY_HU``) becomes background on every slice that has
    an annotation; ``band=None`` marks all of the air there, ``band=0`` none (``import_word``
    refuses a negative band before anything is written).
    """
    from scipy import ndimage as ndi

    if band == 0:
        return scribble
    components, n = ndi.label(image > BODY_HU)
    if n == 0:
        return scribble
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body = components == sizes.argmax()
    plane = ndi.generate_binary_structure(3, 1)
    plane[0] = plane[2] = False  # grow in-plane only
    near = ndi.binary_dilation(body, plane, iterations=2)
    air = ~near
    if band is not None:
        air &= ndi.binary_dilation(near, plane, iterations=band)
    annotated = (scribble != ignore).any(axis=(1, 2))
    air &= annotated[:, None, None] & (scribble == ignore)
    out = scribble.copy()
    out[air] = 0
    return out


def labels_box(image: np.ndarray, label: np.ndarray | None) -> tuple[slice, ...]:
    """The DMSPS authors' crop: foreground labels' bounding box plus ``LABELS_MARGIN``."""
    from dmsps.data.cache import nonzero_box

    if label is None:
        return tuple(slice(0, s) for s in image.shape[1:])
    return nonzero_box(label[None], margin=LABELS_MARGIN)


def _organs(organs: Sequence[str] | None) -> list[str]:
    """Chosen WORD organ names, checked: known, distinct, at least one."""
    if organs is None:
        return list(PAPER_ORGANS)
    names = [o.strip() for o in organs]
    unknown = [o for o in names if o not in WORD_LABELS]
    if unknown or not names:
        what = f"unknown WORD organ '{unknown[0]}'" if unknown else "no organ given"
        raise DmspsError(f"--organs: {what} (valid: {', '.join(WORD_LABELS)})")
    twice = sorted({o for o in names if names.count(o) > 1})
    if twice:
        raise DmspsError(f"--organs: '{twice[0]}' is listed twice")
    return names


def _release_root(src: Path) -> Path:
    """SRC itself, or the one folder in it that holds imagesTr/ (an unpacked release)."""
    if (src / "imagesTr").is_dir():
        return src
    inner = [d for d in sorted(src.iterdir()) if (d / "imagesTr").is_dir()]
    if len(inner) == 1:
        return inner[0]
    raise DataError(
        src,
        "holds no imagesTr/ folder (nor one release folder with it); expected the WORD "
        "layout imagesTr/, labelsTr/, imagesVal/, labelsVal/, imagesTs/, labelsTs/",
    )


def _word_cases(
    root: Path, warnings: list[str]
) -> tuple[dict[str, str], dict[str, tuple[Path, Path]]]:
    """Case -> split and case -> (image, label) from the official folders."""
    roles: dict[str, str] = {}
    files: dict[str, tuple[Path, Path]] = {}
    for split, part in WORD_SPLITS.items():
        image_dir, label_dir = root / f"images{part}", root / f"labels{part}"
        if not image_dir.is_dir():
            warnings.append(f"{image_dir}: warning: not found; no {split} cases")
            continue
        if not label_dir.is_dir():
            raise DataError(label_dir, f"missing: the labels of the {split} cases in {image_dir}")
        images = index_by_stem([image_dir], recursive=False)
        labels = index_by_stem([label_dir], recursive=False)
        for case, path in images.items():
            if case in files:
                raise DataError(path, f"case '{case}' also found at {files[case][0]}")
            if case not in labels:
                raise DataError(
                    label_dir / f"{case}{NIFTI_ENDINGS[0]}", f"missing label of case '{case}'"
                )
            roles[case], files[case] = split, (path, labels[case])
        for case in sorted(set(labels) - set(images)):
            warnings.append(f"{labels[case]}: warning: label matches no image; ignored")
    if not files:
        raise DataError(root / "imagesTr", "holds no NIfTI images (.nii.gz or .nii)")
    return roles, files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src", metavar="SRC", type=Path, help="WORD release folder (holding imagesTr/ ...)"
    )
    add_out_arguments(p, default_name="WORD")
    p.add_argument(
        "--organs",
        metavar="NAME,...",
        help="WORD organs to keep, as classes 1..N in this order (default: the paper's "
        "seven, " + ",".join(PAPER_ORGANS) + ")",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        default="body",
        help="body: the body's box, from the image (default); labels: the organs' box + "
        f"{LABELS_MARGIN} voxels, uses the labels of test cases too (the DMSPS authors' "
        "crop); none: whole volumes",
    )
    p.add_argument(
        "--scribbles",
        type=Path,
        metavar="DIR",
        help="folder with <case>.nii.gz or <case>_scribble.nii.gz scribbles in WORD values "
        f"(default: the release's own {RELEASE_SCRIBBLES}/, where it is there)",
    )
    p.add_argument(
        "--no-release-scribbles",
        dest="release_scribbles",
        action="store_false",
        help=f"leave the release's {RELEASE_SCRIBBLES}/ unused: simulate every train/val "
        "case's scribble instead",
    )
    p.add_argument(
        "--scribble-unannotated",
        type=int,
        default=None,
        metavar="V",
        help="value marking unannotated voxels in the scribble files (default: detected "
        "per file, the one value that is no WORD label and is the file's most frequent)",
    )
    add_scribble_arguments(p, value_map=False, simulate_flag=False, style="dmsps")
    p.set_defaults(background_strokes=4)
    p.add_argument(
        "--air-band",
        type=_air_band,
        default=AIR_BAND,
        metavar="N|all",
        help="simulated scribbles: width in voxels of the background stroke drawn in the "
        f"air around the body (default {AIR_BAND}); 0: none; all: all of the air",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of simulated scribbles (default 0)"
    )


def _air_band(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a number of voxels (0 or more) or 'all', got '{text}'"
        )
    return value


def run(args: argparse.Namespace) -> ImportResult:
    return import_word(
        args.src,
        args.out,
        organs=args.organs.split(",") if args.organs is not None else None,
        crop=args.crop,
        scribbles=args.scribbles,
        scribble_unannotated=args.scribble_unannotated,
        release_scribbles=args.release_scribbles,
        air_band=args.air_band,
        seed=args.seed,
        **scribble_options(args),
        **out_options(args),
    )


IMPORTER = Importer(
    name="word",
    help="WORD abdominal CT release (official Tr/Val/Ts folders), its scribbles, given or "
    "simulated ones",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
