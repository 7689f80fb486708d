"""Tiny, valid WORD and BraTS 2020 sources in their official layouts, written in code.

Shared by the importer tests and by contract tests that run every importer. The arrays
are (Z, Y, X); files are written the way external tools write them (``nib_save``), on a
rotated, anisotropic affine so that any axis mix-up in a crop shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support import nib_save

# === WORD ===============================================================================
#: (Z, Y, X) of every WORD case: wide in X, so the labels crop (+20 voxels) shrinks too.
WORD_SHAPE = (8, 24, 72)

#: Case -> the folder part holding it (Tr = train, Val = val, Ts = test).
WORD_CASES = {"word_0001": "Tr", "word_0002": "Tr", "word_0003": "Val", "word_0004": "Ts"}

#: The body: Y and X ranges (end exclusive) at case offset 0, on every slice.
WORD_BODY = ((5, 19), (8, 60))

#: WORD label value -> (Y range, X range) of its block at case offset 0, on every slice.
WORD_ORGANS = {
    2: ((7, 12), (22, 27)),  # spleen
    1: ((7, 12), (27, 35)),  # liver
    5: ((7, 12), (35, 40)),  # stomach
    7: ((7, 12), (40, 43)),  # esophagus: not one of the paper's seven
    3: ((12, 17), (22, 25)),  # kidney_left
    4: ((12, 17), (25, 28)),  # kidney_right
    6: ((12, 17), (28, 31)),  # gallbladder
    8: ((12, 17), (31, 37)),  # pancreas: the paper's class 7
    10: ((12, 17), (37, 43)),  # colon: not one of the paper's seven
}


def word_case(index: int) -> tuple[np.ndarray, np.ndarray]:
    """(image in HU as int16, label in WORD values) of case ``index``, shifted by it in X.

    Air (-1000 HU) around a soft-tissue body (40 HU) holding the organs, plus a dense
    fragment at the volume's corner that is not connected to the body (like a piece of
    the table), which the body crop must leave out.
    """
    rng = np.random.default_rng(index)
    image = np.full(WORD_SHAPE, -1000, np.int16)
    label = np.zeros(WORD_SHAPE, np.uint8)
    (y0, y1), (x0, x1) = WORD_BODY
    image[:, y0:y1, x0 + index : x1 + index] = 40
    for value, ((a, b), (c, d)) in WORD_ORGANS.items():
        label[:, a:b, c + index : d + index] = value
        image[:, a:b, c + index : d + index] = 40 + 10 * value
    image += rng.integers(-5, 6, WORD_SHAPE).astype(np.int16)
    image[0, 0, 0:3] = 300  # the disconnected fragment
    return image, label


def word_scribble(index: int, unannotated: int = 255) -> np.ndarray:
    """A scribble of case ``index`` in WORD values, as the release's scribblesTr/ holds
    them: strokes across the organs on slices 2 and 5, ``unannotated`` elsewhere."""
    _, label = word_case(index)
    scribble = np.full(WORD_SHAPE, unannotated, np.uint8)
    for z in (2, 5):
        for y in (9, 14):
            scribble[z, y, 20 + index : 45 + index] = label[z, y, 20 + index : 45 + index]
        scribble[z, 6, 10:50] = 0
    return scribble


def write_word_source(root: Path, scribbles: bool = False) -> None:
    """WORD's official layout: images{Tr,Val,Ts}/ and labels{Tr,Val,Ts}/ under ``root``;
    with ``scribbles`` also the train cases' scribblesTr/, as the release ships them."""
    for index, (case, part) in enumerate(WORD_CASES.items()):
        image, label = word_case(index)
        nib_save(root / f"images{part}" / f"{case}.nii.gz", image)
        nib_save(root / f"labels{part}" / f"{case}.nii.gz", label)
        if scribbles and part == "Tr":
            nib_save(root / "scribblesTr" / f"{case}.nii.gz", word_scribble(index))


# === BraTS 2020 =========================================================================
#: (Z, Y, X) of every BraTS case.
BRATS_SHAPE = (8, 24, 24)

BRATS_CASES = [f"BraTS20_Training_{i:03d}" for i in range(1, 6)]

#: Non-zero box (end exclusive, Z, Y, X) of each sequence: their union is the crop.
BRATS_BOXES = {
    "t1": ((1, 7), (4, 20), (5, 19)),
    "t1ce": ((1, 7), (4, 20), (5, 19)),
    "t2": ((1, 7), (3, 20), (5, 19)),
    "flair": ((1, 6), (4, 20), (5, 21)),
}

#: The union of BRATS_BOXES: what every case is cropped to.
BRATS_CROP = ((1, 7), (3, 20), (5, 21))


def brats_case(index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(sequence name -> image, seg in BraTS values 0, 1, 2, 4) of case ``index``."""
    rng = np.random.default_rng(100 + index)
    images = {}
    for name, ((z0, z1), (y0, y1), (x0, x1)) in BRATS_BOXES.items():
        image = np.zeros(BRATS_SHAPE, np.float32)
        image[z0:z1, y0:y1, x0:x1] = rng.uniform(100, 1000, (z1 - z0, y1 - y0, x1 - x0))
        images[name] = image
    seg = np.zeros(BRATS_SHAPE, np.uint8)
    seg[1:7, 8:16, 12:18] = 2  # edema
    seg[1:7, 8:12, 8:12] = 4  # enhancing tumour
    seg[1:7, 12:14, 8:12] = 1  # necrosis
    return images, seg


def write_brats_source(root: Path) -> None:
    """``root/BraTS20_Training_NNN/BraTS20_Training_NNN_{t1,t1ce,t2,flair,seg}``: .nii.gz
    files, except the last case's, which are .nii (as in some copies of the release)."""
    for index, case in enumerate(BRATS_CASES):
        images, seg = brats_case(index)
        ending = ".nii" if index == len(BRATS_CASES) - 1 else ".nii.gz"
        for name, image in images.items():
            nib_save(root / case / f"{case}_{name}{ending}", image)
        nib_save(root / case / f"{case}_seg{ending}", seg)
