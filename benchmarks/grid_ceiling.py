"""How much Dice a training grid can keep: labels taken to a coarser voxel spacing and back.

A model trained on resampled cases (``target_spacing``) predicts on the coarse grid and
its probabilities come back to the image trilinearly. Even a perfect coarse prediction
loses detail at organ boundaries; this script measures that ceiling with the labels
themselves as the "prediction": one-hot labels, trilinear to the coarse grid (the
cache's and predictor's own ``resample``), trilinear back, argmax, Dice per class.

    python benchmarks/grid_ceiling.py DATASET --spacing 8 8 8 --spacing 4 4 4 \
        --split test --out bench-out/grid-ceiling.json

Prints mean foreground Dice per spacing (and per class); exits non-zero on no cases.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dmsps.data.cache import resample, resampled_shape
from dmsps.data.layout import Dataset
from dmsps.eval.metrics import dice_per_class


def round_trip(label: np.ndarray, spacing, target, num_classes: int) -> np.ndarray:
    """The label map after a trip to the ``target`` grid and back, as probabilities do."""
    onehot = torch.nn.functional.one_hot(torch.from_numpy(label.astype(np.int64)), num_classes)
    onehot = onehot.movedim(-1, 0).float()
    coarse = resample(onehot, resampled_shape(label.shape, spacing, target))
    return resample(coarse, label.shape).argmax(0).numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("dataset", type=Path, help="a dmsps dataset folder (with dataset.json)")
    ap.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        action="append",
        required=True,
        metavar=("SZ", "SY", "SX"),
        help="a coarse grid in mm; repeat for more",
    )
    ap.add_argument("--split", default="test", help="cases to measure (need labels)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    ds = Dataset(args.dataset)
    k, names = ds.meta.num_classes, ds.meta.class_names
    cases = [c for c in ds.split(args.split) if ds.paths(c).label is not None]
    if not cases:
        print(f"{args.dataset}: no labelled cases in the {args.split} split")
        return 1
    results = []
    for target in args.spacing:
        per_case = []
        for case in cases:
            _, geom = ds.load_image(case)
            label = ds.load_label(case)
            back = round_trip(label, geom.spacing, target, k)
            per_case.append(dice_per_class(back, label, k))
        per_class = np.mean(per_case, axis=0)
        row = {
            "spacing_mm": list(target),
            "mean_dice": float(per_class.mean()),
            "per_class": dict(zip(names[1:], map(float, per_class), strict=True)),
            "cases": len(cases),
        }
        results.append(row)
        detail = ", ".join(f"{n} {d:.3f}" for n, d in row["per_class"].items())
        print(f"{target} mm: mean Dice {row['mean_dice']:.3f} ({detail})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"dataset": str(args.dataset), "split": args.split, "results": results}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
