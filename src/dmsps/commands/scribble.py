"""`dmsps scribble`: simulate scribbles from dense labels, or thin out existing ones."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "scribble"
HELP = "simulate scribbles from dense labels, or shorten existing scribbles"
DESCRIPTION = """\
Simulate scribbles for every NIfTI label volume in LABELS_DIR and write them, with the
same names and geometry, into OUT_DIR. With --from-scribbles, the input holds scribbles
already (real ones, e.g. ACDC's) and they are made sparser instead.

Per slice and per class one thin stroke is drawn along the skeleton of the structure,
away from its boundary; background gets a loop a few pixels around the foreground and a
second loop further out. Unannotated voxels get the ignore value C (the number of
classes). --density shortens strokes to that fraction of their length (the DMSPS paper
studies 1, 1/2, 1/4, 1/8 and 1/16). --every-nth-slice N keeps the strokes of every N-th
slice only (axis 0; centred on the middle slice), as annotators of 3D volumes do.

--scribble-style authors draws them the way the DMSPS authors' generator drew the
paper's WORD and BraTS scribbles instead: per slice and class, the skeleton of the
eroded region (--authors-erosion), one random path through it, 3 pixels wide, slightly
shifted and turned and clipped to the class; background gets its whole skeleton. It has
no stroke length (--density stays 1); --every-nth-slice works as above.

--from-scribbles: every stroke (per slice, class and connected piece) keeps --length of
its pixels as one piece from one end (deterministic, no seed), and --every-nth-slice
keeps every N-th *annotated* slice. This is the paper's 1/4-length ACDC experiment
(--length 0.25). The ignore value comes from --num-classes or from the dataset.json of
the folder above the input. `dmsps run --set scribbles.length=0.25` does the same inside
a run folder, without a separate dataset.

OUT_DIR must be empty or absent: files in it are replaced, or written beside, only with
--force.

examples:
  dmsps scribble data/mine/labelsTr data/mine/scribblesTr --density 0.25 --seed 0
  dmsps scribble data/mine/labelsTr authors/scribblesTr --scribble-style authors
  dmsps scribble data/acdc/scribblesTr acdc_quarter/scribblesTr --from-scribbles --length 0.25
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "labels_dir",
        metavar="LABELS_DIR",
        help="folder of dense label volumes (.nii.gz / .nii), or of scribbles with "
        "--from-scribbles",
    )
    parser.add_argument(
        "out_dir", metavar="OUT_DIR", help="folder for the scribbles (created; not LABELS_DIR)"
    )
    parser.add_argument(
        "--density",
        type=float,
        default=1.0,
        help="stroke length as a fraction of the full stroke, in (0, 1] (default 1)",
    )
    parser.add_argument(
        "--every-nth-slice",
        type=int,
        default=1,
        metavar="N",
        help="keep the strokes of every N-th slice only (default 1: all)",
    )
    parser.add_argument(
        "--from-scribbles",
        action="store_true",
        help="the input holds scribbles: shorten them (--length) and thin their slices",
    )
    parser.add_argument(
        "--length",
        type=float,
        default=1.0,
        help="--from-scribbles: keep this fraction of every stroke, in (0, 1] (default 1)",
    )
    parser.add_argument(
        "--scribble-style",
        choices=("dmsps", "authors"),
        default="dmsps",
        help="dmsps: our simulator (default); authors: the DMSPS authors' generator, "
        "which made the paper's WORD and BraTS scribbles",
    )
    parser.add_argument(
        "--authors-erosion",
        type=_erosion_range,
        default=(1, 7),
        metavar="MIN,MAX",
        help="--scribble-style authors: a class covering more than 900 pixels of a slice "
        "is eroded ceil(MIN + u * (MAX - MIN)) times, u uniform in [0, 1), before its "
        "skeleton is taken (default 1,7: 2 to 7 times)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty OUT_DIR, replacing files of the same names",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes C incl. background (default: largest label + 1; with "
        "--from-scribbles: from the dataset.json above the input)",
    )


def _erosion_range(text: str) -> tuple[int, int]:
    from dmsps.data.importers.common import erosion_range

    return erosion_range(text)


def run(args: argparse.Namespace) -> int:
    import zlib

    import numpy as np

    from dmsps.data.simulation import keep_every_nth_slice, simulate_scribble
    from dmsps.errors import DmspsError
    from dmsps.io.nifti import is_nifti, load_volume, save_volume
    from dmsps.progress import progress_bar

    labels_dir, out_dir = Path(args.labels_dir), Path(args.out_dir)
    if args.every_nth_slice < 1:
        raise DmspsError(f"--every-nth-slice must be at least 1, got {args.every_nth_slice}")
    if args.from_scribbles:
        return _thin_out(args, labels_dir, out_dir)
    if args.length != 1.0:
        raise DmspsError("--length shortens existing scribbles: add --from-scribbles")
    if not 0.0 < args.density <= 1.0:
        raise DmspsError(f"--density must be in (0, 1], got {args.density}")
    if args.scribble_style == "authors":
        from dmsps.data.authors_scribbles import check_style_options

        check_style_options(args.density, args.authors_erosion, "--density")
    if args.seed < 0:
        raise DmspsError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.num_classes is not None and not 2 <= args.num_classes <= 255:
        raise DmspsError(f"--num-classes must be in 2..255, got {args.num_classes}")
    if not labels_dir.is_dir():
        raise DmspsError(f"{labels_dir}: labels folder not found")
    if out_dir.resolve() == labels_dir.resolve():
        raise DmspsError(
            f"{out_dir}: OUT_DIR must differ from LABELS_DIR (never write into inputs)"
        )
    files = sorted(p for p in labels_dir.iterdir() if p.is_file() and is_nifti(p))
    if not files:
        raise DmspsError(f"{labels_dir}: no NIfTI files (.nii.gz / .nii) found")
    _check_out_dir(out_dir, files, args.force)

    # Check every file first (one at a time, volumes can be large), so a bad file fails
    # before anything is written.
    largest = 0
    for path in progress_bar(
        files, desc="checking", unit="volume", leave=False, disable=args.quiet
    ):
        largest = max(largest, _max_label(path))
    num_classes = args.num_classes if args.num_classes is not None else max(largest + 1, 2)
    if largest >= num_classes:
        raise DmspsError(f"found label {largest}, but --num-classes is {num_classes}")
    if num_classes > 255:
        raise DmspsError(f"found label {largest}; at most 254 classes fit a uint8 scribble")

    for path in progress_bar(files, desc="scribble", unit="volume", disable=args.quiet):
        label, geometry = load_volume(path, np.float64)
        # Seeded per file name: a file's scribble does not depend on the other files.
        rng = np.random.default_rng([args.seed, zlib.crc32(path.name.encode())])
        if args.scribble_style == "authors":
            scribble = _authors(label.astype(np.int64), num_classes, rng, args)
        else:
            scribble = simulate_scribble(label.astype(np.int64), num_classes, args.density, rng=rng)
        scribble = keep_every_nth_slice(scribble, args.every_nth_slice, num_classes)
        save_volume(out_dir / path.name, scribble, geometry, np.uint8)
    print(
        f"wrote {len(files)} scribble volume(s) to {out_dir} "
        f"({num_classes} classes, ignore value {num_classes})"
    )
    return 0


def _authors(label, num_classes: int, rng, args: argparse.Namespace):
    """The authors' style, drawn only on the slices --every-nth-slice keeps."""
    from dmsps.data.authors_scribbles import authors_scribble

    step = args.every_nth_slice if label.ndim == 3 else 1
    return authors_scribble(label, num_classes, rng, args.authors_erosion, slice_step=step)


def _check_out_dir(out_dir: Path, files: list[Path], force: bool) -> None:
    """Refuse a non-empty OUT_DIR unless ``force``: never replace or mix in silently."""
    from dmsps.errors import DmspsError

    if force or not out_dir.is_dir():
        return
    taken = [out_dir / p.name for p in files if (out_dir / p.name).exists()]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise DmspsError(f"{taken[0]}: already exists{more}; use --force to replace it")
    others = sorted(p.name for p in out_dir.iterdir() if not p.name.startswith("."))
    if others:
        raise DmspsError(
            f"{out_dir}: output folder holds other files ({', '.join(others[:3])}); choose "
            "an empty folder, or use --force to write into it"
        )


def _max_label(path) -> int:
    """Largest label in a file, after checking that it holds class indices only."""
    import numpy as np

    from dmsps.data.labels import max_label
    from dmsps.io.nifti import load_volume

    data, _ = load_volume(path, np.float64)
    return max_label(data, path)


def _thin_out(args: argparse.Namespace, in_dir, out_dir) -> int:
    """--from-scribbles: shorter strokes and fewer slices from existing scribbles."""
    import json

    from dmsps.data.simulation import thin_out_files
    from dmsps.errors import DataError, DmspsError
    from dmsps.io.nifti import is_nifti

    if args.scribble_style != "dmsps":
        raise DmspsError(
            f"--scribble-style {args.scribble_style} draws scribbles from labels; "
            "--from-scribbles shortens existing ones: leave one of the two out"
        )
    if not 0.0 < args.length <= 1.0:
        raise DmspsError(f"--length must be in (0, 1], got {args.length}")
    if args.density != 1.0:
        raise DmspsError("--density applies to simulated scribbles; use --length here")
    if not in_dir.is_dir():
        raise DmspsError(f"{in_dir}: scribble folder not found")
    if out_dir.resolve() == in_dir.resolve():
        raise DmspsError(f"{out_dir}: OUT_DIR must differ from the input (never write into it)")
    num_classes = args.num_classes
    meta_path = in_dir.resolve().parent / "dataset.json"
    if num_classes is None and meta_path.is_file():
        try:
            labels = json.loads(meta_path.read_text())["labels"]
            num_classes = len([k for k in labels if k != "ignore"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(meta_path, f"cannot read the class labels ({e})") from e
    if num_classes is None:
        raise DmspsError(
            f"{in_dir}: give --num-classes (no dataset.json above it tells the ignore value)"
        )
    if not 2 <= num_classes <= 254:
        raise DmspsError(f"--num-classes must be in 2..254, got {num_classes}")
    files = sorted(p for p in in_dir.iterdir() if p.is_file() and is_nifti(p))
    if not files:
        raise DmspsError(f"{in_dir}: no NIfTI files (.nii.gz / .nii) found")
    _check_out_dir(out_dir, files, args.force)
    pairs = [(path, out_dir / path.name) for path in files]
    before, after = thin_out_files(
        pairs, num_classes, num_classes, args.length, args.every_nth_slice, progress=not args.quiet
    )
    share = after / before if before else 0.0
    print(
        f"wrote {len(files)} scribble volume(s) to {out_dir}: {after} of {before} annotated "
        f"voxels kept ({share:.1%})"
    )
    return 0
