"""Connected-component clean-up of label maps.

Scribble-trained models leave small far-away false positives; they barely move Dice but
dominate HD95. Keeping the largest component removes them: expansion does it per slice
on seeds, ``dmsps predict --largest-component`` per class on whole volumes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (face connectivity) of a boolean mask."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == sizes.argmax()


def largest_component_per_class(
    label_map: np.ndarray, num_classes: int, fill: int, per_slice: bool = False
) -> np.ndarray:
    """Keep, for each class 0..num_classes-1, only its largest component; the rest -> fill.

    ``per_slice`` treats axis 0 as independent slices (2D components).
    """
    out = np.full_like(label_map, fill)
    planes = range(label_map.shape[0]) if per_slice else [slice(None)]
    for z in planes:
        for c in range(num_classes):
            mask = label_map[z] == c
            if mask.any():
                out[z][keep_largest_component(mask)] = c
    return out
