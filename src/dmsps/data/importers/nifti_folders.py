"""``dmsps import nifti``: any folder of NIfTI images with labels and/or scribbles.

Name matching:

* a case is an image file name without its ending (``.nii.gz`` or ``.nii``);
* image names ending in ``_0000``, ``_0001``, ... are channels of one case
  (``brain_0000.nii.gz`` and ``brain_0001.nii.gz`` make the 2-channel case ``brain``);
* the label of case ``X`` is ``X``, ``X_gt``, ``X_label`` or ``X_seg`` in the labels
  folder; its scribble is ``X`` or ``X_scribble`` in the scribbles folder;
* when labels or scribbles share the images folder, only the suffixed names match and
  they are not taken for images.
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
    ScribbleOptions,
    SourceCase,
    add_out_arguments,
    add_scribble_arguments,
    add_split_arguments,
    assign_from_splits,
    load_nifti_case,
    out_options,
    prepare_output,
    random_split,
    read_splits_file,
    scribble_options,
    split_options,
    write_dataset,
)
from dmsps.data.labels import check_unannotated, max_label, parse_value_map
from dmsps.data.layout import LABEL_SUFFIXES, SCRIBBLE_SUFFIXES, DatasetMeta, split_channel
from dmsps.errors import DataError, DmspsError
from dmsps.io.nifti import load_volume, strip_ending

DESCRIPTION = """\
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
--simulate-scribbles draws scribbles from their labels (--slice-step N: on every N-th
slice only; --scribble-style dmsps, ours, or authors, the DMSPS authors' generator).
--splits FILE gives the split explicitly (JSON {"train": [...], "val": [...], "test":
[...]} of case names).

Dense label mapping: --label-map 1:1,2:2,8:7 keeps source labels 1, 2 and 8 as classes
1, 2 and 7 and makes every other label background, in labels and scribbles alike (e.g.
to train on a subset of organs).
"""


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
    slice_step: int = 1,
    background_strokes: int = 1,
    scribble_style: str = "dmsps",
    authors_erosion: tuple[int, int] = (1, 7),
    label_map: dict[int, int] | None = None,
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
    if label_map is not None and (not label_map or min(label_map.values()) < 1):
        raise DmspsError("--label-map needs SOURCE:CLASS pairs with classes 1 or more")
    meta = _nifti_meta(
        name or out.name,
        class_names,
        channel_names,
        len(next(iter(case_images.values()))),
        label_files,
        progress,
        label_map,
    )
    C = meta.num_classes
    unannotated = C if ignore_value is None else int(ignore_value)
    value_map = scribble_map or {}
    check_unannotated(unannotated, C, value_map)
    opts = ScribbleOptions(
        unannotated=unannotated,
        value_map=value_map,
        simulate=simulate_scribbles,
        density=scribble_density,
        slice_step=slice_step,
        seed=seed,
        background_regions=background_strokes,
        style=scribble_style,
        erosion=authors_erosion,
    )
    simulate = opts.simulator() is not None

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
        return load_nifti_case(
            case,
            case_images[case],
            label_files.get(case),
            scribble_files.get(case),
            meta,
            opts,
            simulate=simulate and roles[case] != "test",
            label_map=label_map,
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
        case, channel = split_channel(stem) if channel_suffix else (stem, None)
        if channel is not None:
            ch = channels.setdefault(case, {})
            if channel in ch:
                raise DataError(p, f"ambiguous: {ch[channel]} is the same channel")
            ch[channel] = p
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
    label_map: dict[int, int] | None = None,
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
        top = max(label_map.values()) if label_map else _max_label(label_files, progress)
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
    from dmsps.progress import progress_bar

    top = 0
    for path in progress_bar(
        list(label_files.values()),
        desc="scan labels",
        unit="file",
        disable=not progress,
        leave=False,
    ):
        arr, _ = load_volume(path, np.float32)
        top = max(top, max_label(arr, path))
    return top


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src", metavar="SRC", type=Path, nargs="?", help="source folder (optional with --images)"
    )
    add_out_arguments(p, default_name=None)
    p.add_argument("--images", type=Path, metavar="DIR", help="folder of image NIfTIs")
    p.add_argument("--labels", type=Path, metavar="DIR", help="folder of dense label NIfTIs")
    p.add_argument("--scribbles", type=Path, metavar="DIR", help="folder of scribble NIfTIs")
    p.add_argument(
        "--class-names",
        metavar="NAMES",
        help="comma-separated class names, background first (e.g. bg,liver)",
    )
    p.add_argument(
        "--channel-names",
        metavar="NAMES",
        help="comma-separated channel names (e.g. T1,T2); they choose the normalisation "
        "(CT: HU window; t1/t1ce/t2/flair: z-score over the brain; others: z-score)",
    )
    p.add_argument(
        "--ignore-value",
        type=int,
        metavar="V",
        help="value marking unannotated scribble voxels (default: number of classes)",
    )
    p.add_argument(
        "--label-map",
        metavar="SRC:CLASS,...",
        help="keep only these source labels, as these classes (others become background)",
    )
    p.add_argument(
        "--no-channel-suffix",
        action="store_true",
        help="treat a trailing _NNNN as part of the case name, not a channel number",
    )
    add_scribble_arguments(p, style="dmsps")
    add_split_arguments(p, val=0.2, test=0.0)


def _names(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def _folders(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    """--images/--labels/--scribbles, defaulting to SRC's subfolders (see --help)."""
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


def run(args: argparse.Namespace) -> ImportResult:
    images, labels, scribbles = _folders(args)
    label_map = parse_value_map(args.label_map, "--label-map") if args.label_map else None
    return import_nifti(
        images,
        args.out,
        labels=labels,
        scribbles=scribbles,
        class_names=_names(args.class_names),
        channel_names=_names(args.channel_names),
        ignore_value=args.ignore_value,
        channel_suffix=not args.no_channel_suffix,
        label_map=label_map,
        **scribble_options(args),
        **split_options(args),
        **out_options(args),
    )


IMPORTER = Importer(
    name="nifti",
    help="your own folder(s) of NIfTI images, labels and/or scribbles",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
