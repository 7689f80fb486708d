"""`dmsps export`: a checkpoint's inference network as an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "export a checkpoint's inference network to ONNX"
DESCRIPTION = """\
Write the main decoder of a checkpoint as an ONNX graph (BatchNorm folded into the
convolutions, logits out, any batch size and any spatial size) for running the model
where PyTorch is not installed, e.g. with ONNX Runtime. The checkpoint's metadata
(classes, channels, normalisation, how to run the model over a volume) is stored inside
the file, so `dmsps predict OUT.onnx IN PRED` works as with the checkpoint. Uncertainty
maps need both decoders and so the checkpoint.

After writing, the export is checked: ONNX Runtime and PyTorch run the same random input
and the largest difference of their logits is printed.

Needs the onnx, onnxscript and onnxruntime packages (pip install -e ".[onnx]").

example:
  dmsps export runs/acdc/stage2/checkpoints/best.pt --onnx acdc.onnx
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a .pt checkpoint")
    parser.add_argument(
        "--onnx", type=Path, required=True, metavar="OUT.onnx", help="the ONNX file to write"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip comparing ONNX Runtime with PyTorch"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing OUT.onnx")


def run(args: argparse.Namespace) -> int:
    from dmsps.errors import DmspsError
    from dmsps.models.export import export_onnx

    if (args.onnx.exists() or args.onnx.is_symlink()) and not args.force:
        raise DmspsError(f"{args.onnx}: already exists; use --force to replace it")
    result = export_onnx(args.checkpoint, args.onnx, check=not args.no_check)
    line = (
        f"wrote {result['path']}: {result['spatial_dims']}D, {result['in_channels']} "
        f"channel(s) in, {result['num_classes']} classes out; spatial sizes are padded to "
        f"multiples of {result['multiples']} inside `dmsps predict`"
    )
    if "max_abs_diff" in result:
        line += f"; ONNX Runtime vs PyTorch: largest logit difference {result['max_abs_diff']:.2e}"
    print(line)
    return 0
