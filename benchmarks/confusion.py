"""Where a model's errors go: voxel confusion matrix and, per class, how deep the missed
voxels lie inside the true structure.

Dice says how much is wrong, not what kind of wrong. A missed rim (every missed voxel in
the structure's outer layer), a missed lobe and a class swapped for another need
different fixes; this separates them. Layers are counted by erosion with the 6-connected
cross: layer 1 is the structure's surface.

    python benchmarks/confusion.py PRED_DIR DATASET --split test [--out FILE.json]

PRED_DIR holds ``<case>.nii.gz`` label maps (``dmsps predict`` output) on the dataset's
grid. Prints the matrix (rows: truth, columns: prediction) and, per class, its voxels,
the missed ones by where they went (background or other classes) and the share of each
of the first layers that was missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from dmsps.data.layout import Dataset
from dmsps.io.nifti import load_volume

#: Layers reported per class (deeper ones are summed into the last).
LAYERS = 4


def layer_index(mask: np.ndarray, layers: int = LAYERS) -> np.ndarray:
    """Per voxel of ``mask``: 1 on its surface, 2 one erosion in, ..., ``layers`` deeper;
    0 outside."""
    out = np.zeros(mask.shape, np.int8)
    cross = ndi.generate_binary_structure(mask.ndim, 1)
    current = mask.copy()
    for k in range(1, layers):
        inner = ndi.binary_erosion(current, cross)
        out[current & ~inner] = k
        current = inner
    out[current] = layers
    return out


def analyse(pairs, num_classes: int) -> dict:
    """``pairs``: (truth, prediction) label maps. The matrix and per-class layer misses."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    layer_total = np.zeros((num_classes, LAYERS), np.int64)
    layer_missed = np.zeros((num_classes, LAYERS), np.int64)
    for truth, pred in pairs:
        if truth.shape != pred.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from {truth.shape}")
        np.add.at(matrix, (truth.ravel(), pred.ravel()), 1)
        for c in range(1, num_classes):
            layers = layer_index(truth == c)
            missed = (truth == c) & (pred != c)
            for k in range(1, LAYERS + 1):
                at = layers == k
                layer_total[c, k - 1] += int(at.sum())
                layer_missed[c, k - 1] += int((at & missed).sum())
    share = np.divide(
        layer_missed, layer_total, out=np.zeros(layer_missed.shape), where=layer_total > 0
    )
    return {"matrix": matrix.tolist(), "layer_missed_share": share.round(4).tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pred", type=Path, help="folder of predicted label maps")
    ap.add_argument("dataset", type=Path, help="dataset folder with the true labels")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    ds = Dataset(args.dataset)
    names = ds.meta.class_names
    cases = ds.split(args.split)
    if not cases:
        print(f"{args.dataset}: split '{args.split}' has no cases", file=sys.stderr)
        return 2

    def pairs():
        for case in cases:
            pred, _ = load_volume(args.pred / f"{case}.nii.gz", np.int64)
            yield ds.load_label(case).astype(np.int64), pred.astype(np.int64)

    result = analyse(pairs(), len(names))
    m = np.array(result["matrix"])
    width = max(len(n) for n in names) + 2
    print("truth \\ prediction".ljust(width) + "".join(n[:10].rjust(11) for n in names))
    for i, n in enumerate(names):
        print(n.ljust(width) + "".join(f"{v:11d}" for v in m[i]))
    print(f"\nmissed share by layer (1 = surface, {LAYERS} = deeper)")
    for c in range(1, len(names)):
        total = int(m[c].sum())
        to_bg = int(m[c, 0])
        to_other = total - int(m[c, c]) - to_bg
        shares = " ".join(f"{s:.2f}" for s in result["layer_missed_share"][c])
        print(
            f"{names[c].ljust(width)} voxels {total:9d}  missed to background {to_bg:8d}, "
            f"to other classes {to_other:7d}  layers {shares}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"classes": names, "cases": cases, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
