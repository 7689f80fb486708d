"""Intensity normalisation shared by training and inference (stored in checkpoints)."""

from __future__ import annotations

import numpy as np

from dmsps.errors import DmspsError

NORMALISATIONS = ("zscore",)


def normalise(image: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Per-volume, per-channel z-score over the whole volume; image is (C, Z, Y, X).

    Per-volume statistics make the model indifferent to scanner gain, which differs
    between MRI sites far more than anatomy does.
    """
    if method != "zscore":
        raise DmspsError(f"unknown normalisation '{method}' (known: {', '.join(NORMALISATIONS)})")
    image = image.astype(np.float32, copy=True)
    for c in range(image.shape[0]):
        ch = image[c]
        mean, std = float(ch.mean()), float(ch.std())
        image[c] = (ch - mean) / max(std, 1e-6)
    return image
