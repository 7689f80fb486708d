"""In-memory 2D slice store: every training slice resized once to the training size.

Resizing once up front (instead of per sample per step, as the research code does)
takes data preparation out of the training step entirely; augmentation then runs on
whole batches on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dmsps.data.layout import Dataset
from dmsps.data.normalize import normalise
from dmsps.errors import DmspsError


def resize_slices(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize (N, C, H, W); ``nearest`` for label maps, ``bilinear`` for images."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def host_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU tensor to ``device`` without making the host wait.

    A plain ``.to("cuda")`` from pageable memory synchronises the stream, i.e. waits for
    the GPU to finish the previous step; the training step does two such copies (sample
    indices, augmentation matrices). Pinned memory makes the copy asynchronous.
    """
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@dataclass
class SliceStore:
    images: torch.Tensor  # (N, C, H, W) float32, normalised
    scribbles: torch.Tensor  # (N, H, W) uint8
    labels: torch.Tensor | None  # (N, H, W) uint8, dense; only when needed

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> SliceStore:
        return SliceStore(
            self.images.to(device),
            self.scribbles.to(device),
            None if self.labels is None else self.labels.to(device),
        )

    def sample(self, batch: int, generator: torch.Generator):
        idx = torch.randint(0, len(self), (batch,), generator=generator)
        idx = host_to(idx, self.images.device)
        lab = None if self.labels is None else self.labels[idx].long()
        return self.images[idx], self.scribbles[idx].long(), lab


def load_slices(
    ds: Dataset,
    cases: list[str],
    size: int,
    scribble_dir: Path | None = None,
    need_labels: bool = False,
    progress: bool = True,
) -> SliceStore:
    """Load the training cases' slices; slices with no annotated pixel are dropped."""
    if not cases:
        raise DmspsError(f"{ds.root}: the training split is empty")
    ignore = ds.meta.ignore_value
    imgs, scribs, labs = [], [], []
    for case in tqdm(cases, desc="loading training slices", disable=not progress, leave=False):
        image, _ = ds.load_image(case)
        scrib = ds.load_scribble(case, scribble_dir)
        if scrib is None:
            where = scribble_dir or ds.root / "scribblesTr"
            raise DmspsError(f"{where}: no scribble for training case '{case}'")
        label = ds.load_label(case) if need_labels else None
        if need_labels and label is None:
            raise DmspsError(f"{ds.root / 'labelsTr'}: method 'full' needs a label for '{case}'")
        image = normalise(image)
        # Dense supervision uses every slice; scribble methods only annotated ones.
        keep = np.ones(scrib.shape[0], bool) if need_labels else (scrib != ignore).any((1, 2))
        if not keep.any():
            continue
        t_img = torch.from_numpy(np.ascontiguousarray(image[:, keep].transpose(1, 0, 2, 3)))
        imgs.append(resize_slices(t_img, (size, size), "bilinear"))
        t_s = torch.from_numpy(scrib[keep].astype(np.float32))[:, None]
        scribs.append(resize_slices(t_s, (size, size), "nearest")[:, 0].to(torch.uint8))
        if label is not None:
            t_l = torch.from_numpy(label[keep].astype(np.float32))[:, None]
            labs.append(resize_slices(t_l, (size, size), "nearest")[:, 0].to(torch.uint8))
    if not imgs:
        raise DmspsError(f"{ds.root}: no training slice has any annotated pixel")
    return SliceStore(
        torch.cat(imgs).contiguous(),
        torch.cat(scribs).contiguous(),
        torch.cat(labs).contiguous() if labs else None,
    )


@dataclass
class Volume:
    case: str
    image: np.ndarray  # (C, Z, Y, X) normalised
    label: np.ndarray | None


def load_volumes(ds: Dataset, cases: list[str], progress: bool = True) -> list[Volume]:
    out = []
    for case in tqdm(cases, desc="loading volumes", disable=not progress, leave=False):
        image, _ = ds.load_image(case)
        out.append(Volume(case, normalise(image), ds.load_label(case)))
    return out
