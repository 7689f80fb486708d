"""`dmsps predict`: segment NIfTI images with a checkpoint or an exported ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "predict"
HELP = "segment NIfTI images (or a dataset split) with a trained checkpoint"
DESCRIPTION = """Write one label map per case with the input's geometry.

IN is a NIfTI file, a folder of NIfTIs (NAME_0000.nii.gz, NAME_0001.nii.gz... are the
channels of case NAME, and so are files named after the model's channels, as BraTS names
them: NAME_t1, NAME_t1ce, NAME_t2, NAME_flair; files without such a suffix are
single-channel cases), a folder of such case folders (a BraTS release; seg files are
skipped), or a dataset folder (its --split is predicted). The checkpoint carries the
model, classes, each channel's normalisation, the crop/resampling it was trained with and
how to run it over a volume (resized slices for 2D slice models, a sliding window for
patch models, 3D or 2D): no config file is needed. --uncertainty also writes the normalised
entropy of the two decoders' mean prediction to OUT/uncertainty/.

CHECKPOINT may also be an .onnx file from `dmsps export` (run with ONNX Runtime on the
CPU; it holds the main decoder only, so --uncertainty needs the .pt checkpoint), or be
left out for --model NAME, a model that ships with dmsps (`dmsps models` lists them).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="CHECKPOINT IN OUT: a .pt checkpoint or an exported .onnx, the images, the "
        "output folder; with --model NAME only IN OUT",
    )
    parser.add_argument(
        "--model",
        metavar="NAME",
        help="a shipped model by name instead of CHECKPOINT (dmsps models)",
    )
    parser.add_argument("--uncertainty", action="store_true", help="write uncertainty maps")
    parser.add_argument("--split", default="test", help="split when IN is a dataset")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--largest-component",
        action="store_true",
        help="keep only each class's largest 3D connected component (removes stray blobs; "
        "mostly lowers HD95/ASD). Off by default: the published results use raw predictions",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="sliding-window models: window overlap in [0, 1) (default: the checkpoint's)",
    )
    parser.add_argument(
        "--blend",
        choices=("gaussian", "constant"),
        default=None,
        help="sliding-window models: how overlapping windows are weighted",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="windows or slices per forward pass"
    )
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="overwrite",
        action="store_true",
        help="redo and replace existing outputs (default: keep them, resuming)",
    )
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    from dmsps.errors import DmspsError
    from dmsps.inference.predictor import predict_folder

    want = 2 if args.model else 3
    if len(args.paths) != want:
        form = "--model NAME IN OUT" if args.model else "CHECKPOINT IN OUT"
        raise DmspsError(f"dmsps predict takes {form}, got {len(args.paths)} path(s)")
    if args.model:
        from dmsps.zoo import resolve

        args.checkpoint, (args.input, args.out) = resolve(args.model), args.paths
    else:
        args.checkpoint, args.input, args.out = args.paths

    written = predict_folder(
        args.checkpoint,
        args.input,
        args.out,
        args.uncertainty,
        args.split,
        args.device,
        progress=not args.quiet,
        overwrite=args.overwrite,
        largest_component=args.largest_component,
        overlap=args.overlap,
        blend=args.blend,
        batch=args.batch,
    )
    print(f"wrote {len(written)} label map(s) to {args.out}")
    return 0
