"""`dmsps scribble`: simulate scribbles from dense label volumes."""

from __future__ import annotations

import argparse

NAME = "scribble"
HELP = "simulate scribbles from dense labels"
DESCRIPTION = """\
Simulate scribbles for every NIfTI label volume in LABELS_DIR and write them, with the
same names and geometry, into OUT_DIR.

Per slice and per class one thin stroke is drawn along the skeleton of the structure,
away from its boundary; background gets a loop a few pixels around the foreground and a
second loop further out. Unannotated voxels get the ignore value C (the number of
classes). --density shortens strokes to that fraction of their length (the DMSPS paper
studies 1, 1/2, 1/4, 1/8 and 1/16).

example:
  dmsps scribble data/mine/labelsTr data/mine/scribblesTr --density 0.25 --seed 0
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "labels_dir", metavar="LABELS_DIR", help="folder of dense label volumes (.nii.gz / .nii)"
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
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="number of classes C incl. background (default: largest label + 1)",
    )


def run(args: argparse.Namespace) -> int:
    import zlib
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from dmsps.data.simulation import simulate_scribble
    from dmsps.errors import DmspsError
    from dmsps.io.nifti import is_nifti, load_volume, save_volume

    labels_dir, out_dir = Path(args.labels_dir), Path(args.out_dir)
    if not 0.0 < args.density <= 1.0:
        raise DmspsError(f"--density must be in (0, 1], got {args.density}")
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

    # Check every file first (one at a time, volumes can be large), so a bad file fails
    # before anything is written.
    largest = 0
    for path in tqdm(files, desc="checking", unit="volume", leave=False):
        largest = max(largest, _max_label(path))
    num_classes = args.num_classes if args.num_classes is not None else max(largest + 1, 2)
    if largest >= num_classes:
        raise DmspsError(f"found label {largest}, but --num-classes is {num_classes}")
    if num_classes > 255:
        raise DmspsError(f"found label {largest}; at most 254 classes fit a uint8 scribble")

    for path in tqdm(files, desc="scribble", unit="volume"):
        label, geometry = load_volume(path, np.float64)
        # Seeded per file name: a file's scribble does not depend on the other files.
        rng = np.random.default_rng([args.seed, zlib.crc32(path.name.encode())])
        scribble = simulate_scribble(label.astype(np.int64), num_classes, args.density, rng=rng)
        save_volume(out_dir / path.name, scribble, geometry, np.uint8)
    print(
        f"wrote {len(files)} scribble volume(s) to {out_dir} "
        f"({num_classes} classes, ignore value {num_classes})"
    )
    return 0


def _max_label(path) -> int:
    """Largest label in a file, after checking that it holds class indices only."""
    import numpy as np

    from dmsps.data.labels import max_label
    from dmsps.io.nifti import load_volume

    data, _ = load_volume(path, np.float64)
    return max_label(data, path)
