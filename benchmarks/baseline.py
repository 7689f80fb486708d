"""A plain research-code-style DMSPS training step and inference, for speed comparisons.

This does what the public WSL4MIS / DMSPS training scripts do, on the same network
(``DualDecoderNet``, 2 447 064 parameters at C = 4) and the same loss, with nothing
slowed on purpose:

- a ``torch.utils.data.Dataset`` that augments one slice at a time with numpy/scipy:
  with p 0.5 a random ``np.rot90`` plus ``np.flip``, otherwise with p 0.5 a rotation
  by an angle in [-20, 20) degrees (``scipy.ndimage.rotate``, order 0, reshape=False,
  the scribble filled with the ignore value), then a nearest-neighbour
  ``scipy.ndimage.zoom(order=0)`` of the slice and its scribble to the training size;
- a ``DataLoader`` (shuffle, ``num_workers=0`` by default: on a 2-core machine workers
  only compete with the training threads), eager NCHW fp32 model, default threads;
- the DMSPS loss written inline as in the research scripts: cross-entropy with
  ``ignore_index`` on both decoders, one alpha ~ U(0, 1) per iteration, soft
  cross-entropy of both decoders to the detached mixed soft pseudo-label, sigmoid
  ramp-up of its weight; SGD momentum 0.9, weight decay 1e-4, poly learning rate, the
  loss read back with ``.item()`` every iteration for the log;
- inference slice by slice: nearest zoom to the training size, one forward per slice
  (the research network computes both decoders, the main one is kept), argmax, nearest
  zoom back.

One difference favours the baseline: slices are held in memory instead of being read
from one HDF5 file per item.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import DataLoader, Dataset

from dmsps.models.unet import DualDecoderNet, ModelConfig

__all__ = [
    "BaselineSlices",
    "baseline_infer_volume",
    "baseline_train_step_factory",
    "research_augment",
    "research_dmsps_loss",
]


def research_augment(
    image: np.ndarray, scribble: np.ndarray, size: int, rng: np.random.Generator, ignore: int
) -> tuple[np.ndarray, np.ndarray]:
    """One slice (H, W): rot90+flip (p 0.5) or free rotation (p 0.25), then nearest zoom."""
    if rng.random() > 0.5:
        k = int(rng.integers(0, 4))
        axis = int(rng.integers(0, 2))
        image = np.flip(np.rot90(image, k), axis=axis).copy()
        scribble = np.flip(np.rot90(scribble, k), axis=axis).copy()
    elif rng.random() > 0.5:
        angle = float(rng.uniform(-20.0, 20.0))
        image = ndimage.rotate(image, angle, order=0, reshape=False)
        scribble = ndimage.rotate(
            scribble, angle, order=0, reshape=False, mode="constant", cval=ignore
        )
    h, w = image.shape
    image = ndimage.zoom(image, (size / h, size / w), order=0)
    scribble = ndimage.zoom(scribble, (size / h, size / w), order=0)
    return image, scribble


class BaselineSlices(Dataset):
    """2D slices of varied sizes, augmented and resized one at a time on access."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        scribbles: Sequence[np.ndarray],
        size: int,
        ignore: int = 4,
        seed: int = 0,
    ) -> None:
        self.images, self.scribbles = list(images), list(scribbles)
        self.size, self.ignore = size, ignore
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int):
        image, scribble = research_augment(
            self.images[idx], self.scribbles[idx], self.size, self.rng, self.ignore
        )
        return (
            torch.from_numpy(image.astype(np.float32)).unsqueeze(0),
            torch.from_numpy(scribble.astype(np.uint8)),
        )


def research_dmsps_loss(
    main: torch.Tensor,
    aux: torch.Tensor,
    scribble: torch.Tensor,
    iteration: int,
    alpha: float,
    ignore: int = 4,
    pl_weight: float = 8.0,
    rampup: int = 100,
) -> torch.Tensor:
    """The DMSPS stage-1 loss as the research scripts write it inline."""
    ce = torch.nn.CrossEntropyLoss(ignore_index=ignore)
    loss_ce = 0.5 * (ce(main, scribble.long()) + ce(aux, scribble.long()))
    soft1, soft2 = torch.softmax(main, dim=1), torch.softmax(aux, dim=1)
    pseudo = alpha * soft1.detach() + (1.0 - alpha) * soft2.detach()
    h1 = -(pseudo * F.log_softmax(main, dim=1)).sum(1).mean()
    h2 = -(pseudo * F.log_softmax(aux, dim=1)).sum(1).mean()
    loss_pl = 0.5 * (h1 + h2)
    t = min(max(float(iteration), 0.0), float(rampup)) / rampup if rampup > 0 else 1.0
    weight = pl_weight * math.exp(-5.0 * (1.0 - t) ** 2) if t < 1.0 else pl_weight
    return loss_ce + weight * loss_pl


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline_train_step_factory(
    images: Sequence[np.ndarray],
    scribbles: Sequence[np.ndarray],
    size: int = 256,
    batch: int = 24,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    iterations: int = 30000,
    lr: float = 0.01,
    seed: int = 0,
    model_cfg: ModelConfig | None = None,
) -> tuple[Callable[[int], dict], DualDecoderNet]:
    """Returns ``(step, model)``; ``step(it)`` runs one research-style iteration.

    ``step`` returns ``{"loss", "data_s", "step_s"}``: ``data_s`` is the time spent
    fetching the augmented batch from the DataLoader (and moving it to the device).
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    random.seed(seed)
    model = DualDecoderNet(model_cfg or ModelConfig()).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    data = BaselineSlices(images, scribbles, size, seed=seed)
    loader = DataLoader(
        data,
        batch_size=batch,
        shuffle=True,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=num_workers > 0,
    )
    state = {"iter": iter(loader)}

    def next_batch():
        try:
            return next(state["iter"])
        except StopIteration:
            state["iter"] = iter(loader)
            return next(state["iter"])

    def step(it: int) -> dict:
        t0 = time.perf_counter()
        image, scribble = next_batch()
        image, scribble = image.to(device), scribble.to(device)
        _sync(device)
        t1 = time.perf_counter()
        main, aux = model(image)
        loss = research_dmsps_loss(main, aux, scribble, it, random.random())
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr_now = lr * (1.0 - it / iterations) ** 0.9
        for group in opt.param_groups:
            group["lr"] = lr_now
        value = loss.item()  # the research scripts log the loss every iteration
        t2 = time.perf_counter()
        return {"loss": value, "data_s": t1 - t0, "step_s": t2 - t0}

    return step, model


@torch.no_grad()
def baseline_infer_volume(
    model: torch.nn.Module,
    volume: np.ndarray,
    size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Label map (Z, Y, X) of a (Z, Y, X) volume, one slice at a time."""
    device = torch.device(device)
    model.eval()
    prediction = np.zeros(volume.shape, dtype=np.uint8)
    for z in range(volume.shape[0]):
        sl = volume[z]
        h, w = sl.shape
        x = ndimage.zoom(sl, (size / h, size / w), order=0)
        x = torch.from_numpy(x.astype(np.float32))[None, None].to(device)
        out = model(x)
        if isinstance(out, tuple):
            out = out[0]
        label = torch.argmax(torch.softmax(out, dim=1), dim=1)[0].cpu().numpy()
        prediction[z] = ndimage.zoom(label, (h / size, w / size), order=0)
    return prediction
