"""Whole-volume 2D inference shared by validation, scribble expansion and prediction.

Slices are resized to the training size, predicted in batches, and the class
probabilities are resized back bilinearly before the argmax: this keeps thin structures
(the myocardium) smoother than resizing a label map with nearest neighbour.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dmsps.train.data import resize_slices


@torch.no_grad()
def predict_volume(
    model: torch.nn.Module,
    image: np.ndarray,
    size: int,
    device: torch.device,
    mode: str = "main",
    batch: int = 16,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities (K, Z, Y, X) on the CPU for a normalised (C, Z, Y, X) image.

    ``mode``: "main" (the main decoder, used for segmentation), "mean" (mean of both
    decoders, used for expansion and uncertainty) or "both" (a (main, mean) pair).
    """
    if mode not in ("main", "mean", "both"):
        raise ValueError(f"mode must be main, mean or both, not {mode!r}")
    model.eval()
    _, z, h, w = image.shape
    slices = torch.from_numpy(np.ascontiguousarray(image.transpose(1, 0, 2, 3)))
    outs: dict[str, list[torch.Tensor]] = {"main": [], "mean": []}
    for start in range(0, z, batch):
        x = slices[start : start + batch].to(device, non_blocking=True)
        x = resize_slices(x, (size, size), "bilinear")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if mode == "main":
                probs = {"main": torch.softmax(model(x, aux=False).float(), 1)}
            else:
                main, aux = model(x)
                p_main = torch.softmax(main.float(), 1)
                probs = {"main": p_main, "mean": 0.5 * (p_main + torch.softmax(aux.float(), 1))}
        for key, p in probs.items():
            if (h, w) != (size, size):
                p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
            outs[key].append(p.cpu())
    result = {k: torch.cat(v).permute(1, 0, 2, 3).contiguous() for k, v in outs.items() if v}
    if mode == "both":
        return result["main"], result["mean"]
    return result[mode]


def labels(probs: torch.Tensor) -> torch.Tensor:
    """argmax over the class axis of (K, ...) probabilities, as a label map (int64).

    Same result as ``probs.argmax(0)`` (ties go to the first class), but ``max(0)`` is
    ~8x faster on CPU for this layout (a (4, 10, 230, 240) volume: 10 ms against 78 ms),
    which is ~8 % of whole-volume inference.
    """
    return probs.max(0).indices


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """u = -sum_c p_c log p_c / log K, in [0, 1]; probs is (K, ...)."""
    k = probs.shape[0]
    ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(0)
    return (ent / math.log(k)).clamp(0, 1)


def dice_per_class(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> list[float]:
    """3D Dice for classes 1..K-1 (both empty counts as 1); used for validation."""
    out = []
    for c in range(1, num_classes):
        p, g = pred == c, gt == c
        denom = p.sum() + g.sum()
        out.append(1.0 if denom == 0 else float(2 * (p & g).sum() / denom))
    return out
