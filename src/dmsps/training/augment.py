"""Batched augmentation with tensor ops (one grid_sample per batch, no per-sample loops).

2D, per sample, as in the DMSPS/WSL4MIS recipe: with p 0.5 a random 90-degree rotation
plus a flip; otherwise with p 0.5 a rotation by an angle in [-20, 20] degrees; otherwise
nothing. 3D (off in the authors' 3D recipe, optional here): the same in the (Y, X) plane,
where 3D medical volumes are usually sampled finest, plus a flip of each axis with p 0.5.
Voxels rotated in from outside get the ignore value in the scribble (so they are never
supervised) and the patch's minimum intensity in the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dmsps.device import host_to


def random_affines(batch: int, generator: torch.Generator, max_angle: float = 20.0) -> torch.Tensor:
    """(B, 2, 3) affine matrices (output -> input, normalised coords) for affine_grid."""
    u = torch.rand(batch, 2, generator=generator)
    k = torch.randint(0, 4, (batch,), generator=generator)
    flip_axis = torch.randint(0, 2, (batch,), generator=generator)
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * max_angle
    rot90 = u[:, 0] < 0.5
    free = ~rot90 & (u[:, 1] < 0.5)
    theta = torch.where(rot90, k.double() * (math.pi / 2), torch.zeros(batch, dtype=torch.float64))
    theta = torch.where(free, angle.double() * math.pi / 180, theta)
    c, s = torch.cos(theta), torch.sin(theta)
    # Snap exact quarter turns so that nearest/bilinear sampling stays exact.
    c = torch.where(rot90, c.round(), c)
    s = torch.where(rot90, s.round(), s)
    mats = torch.zeros(batch, 2, 3, dtype=torch.float64)
    mats[:, 0, 0], mats[:, 0, 1], mats[:, 1, 0], mats[:, 1, 1] = c, -s, s, c
    flip = torch.ones(batch, 2, dtype=torch.float64)
    flip[torch.arange(batch), flip_axis] = -1
    flip = torch.where(rot90[:, None], flip, torch.ones_like(flip))
    mats[:, :, :2] = mats[:, :, :2] * flip[:, None, :]
    return mats.float()


def apply_affines(
    mats: torch.Tensor,
    image: torch.Tensor,
    targets: list[torch.Tensor],
    fill: list[int],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Warp images bilinearly and integer maps with nearest sampling.

    ``fill[i]`` is the value given to pixels of ``targets[i]`` that come from outside.
    """
    mats = host_to(mats, image.device)
    grid = F.affine_grid(mats, list(image.shape), align_corners=False)
    lo = image.amin(dim=tuple(range(2, image.dim())), keepdim=True)
    out = F.grid_sample(
        image - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    out = out + lo
    warped: list[torch.Tensor] = []
    if targets:
        stack = torch.stack([t.to(image.dtype) + 1 for t in targets], dim=1)
        stack = F.grid_sample(stack, grid.to(stack.dtype), mode="nearest", align_corners=False)
        for i, t in enumerate(targets):
            w = stack[:, i].round().long() - 1
            warped.append(torch.where(w < 0, torch.full_like(w, fill[i]), w).to(t.dtype))
    return out, warped


def random_affines_3d(
    batch: int, generator: torch.Generator, max_angle: float = 20.0
) -> torch.Tensor:
    """(B, 3, 4) affines for 5D affine_grid: the 2D recipe in the (Y, X) plane, then an
    independent flip of each axis (Z, Y, X) with p 0.5."""
    plane = random_affines(batch, generator, max_angle)  # acts on grid coords (x, y)
    flips = torch.where(
        torch.rand(batch, 3, generator=generator) < 0.5, -1.0, 1.0
    )  # grid coordinate order (x, y, z)
    mats = torch.zeros(batch, 3, 4)
    mats[:, :2, :2] = plane[:, :, :2]
    mats[:, 2, 2] = 1.0
    return mats * torch.cat([flips, torch.ones(batch, 1)], 1)[:, None, :]


def augment_batch(
    image: torch.Tensor,
    targets: list[torch.Tensor],
    fill: list[int],
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    if image.dim() == 5:
        mats = random_affines_3d(image.shape[0], generator)
    else:
        mats = random_affines(image.shape[0], generator)
    return apply_affines(mats, image, targets, fill)
