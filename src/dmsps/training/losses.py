"""Loss building blocks. Hand-checked in tests/test_losses.py."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def partial_ce(logits: torch.Tensor, target: torch.Tensor, ignore: int) -> torch.Tensor:
    """Cross-entropy averaged over annotated pixels only; 0 (with gradient) if none are."""
    valid = target != ignore
    n = valid.sum()
    loss = F.cross_entropy(logits, target.long(), ignore_index=ignore, reduction="sum")
    return loss / n.clamp_min(1)


def background_beyond(q: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Soft target ``q`` (B, C, *spatial) with the voxels beyond the volume (``valid``
    False) set to certain background.

    Padding has no image, so the network's own mix there anchors nothing: left in the
    pseudo-label terms it drifts (the authors' form grew the myocardium into it on ACDC
    as 3D), left out of them the border goes unconstrained (stray sheets along the edge
    of the narrow abdominal demo volumes). nnU-Net counts padded segmentation as
    background too.
    """
    if valid is None:
        return q
    bg = torch.zeros_like(q)
    bg[:, 0] = 1.0
    return torch.where(valid.unsqueeze(1), q, bg)


def soft_ce(log_probs: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """H(q, p) = mean over pixels of -sum_c q_c log p_c, with q treated as a constant."""
    return -(q * log_probs).sum(dim=1).mean()


def authors_soft_ce(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The pseudo-label loss as the authors' code computes it: H(q, softmax(softmax(z))).

    Their scripts hand softmax probabilities to a cross-entropy that applies softmax
    again. Probabilities in [0, 1] only spread softmax over a factor e, so the loss never
    falls below -log(e / (e + C - 1)) and its gradient is far smaller than H(q, softmax(z))'s.
    """
    return soft_ce(F.log_softmax(torch.softmax(logits, 1), 1), q)


def paper_soft_ce(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The paper's pseudo-label loss H(q, softmax(z))."""
    return soft_ce(F.log_softmax(logits, 1), q)


#: Pseudo-label loss forms, by setting name: (logits, soft target) -> loss.
PL_LOSSES = {"soft-ce": paper_soft_ce, "authors": authors_soft_ce}


def dice_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 1e-5,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft Dice loss averaged over classes (background included), pooled over the batch.

    ``mask`` (B, *spatial) bool leaves voxels out of both the overlap and the sizes.
    """
    c = probs.shape[1]
    onehot = F.one_hot(target.long(), c).movedim(-1, 1).to(probs.dtype)
    if mask is not None:
        m = mask[:, None].to(probs.dtype)
        probs, onehot = probs * m, onehot * m
    dims = (0, *range(2, probs.dim()))
    inter = (probs * onehot).sum(dims)
    denom = (probs * probs).sum(dims) + onehot.sum(dims)
    return (1 - (2 * inter + smooth) / (denom + smooth)).mean()


def sigmoid_rampup(iteration: int, length: int) -> float:
    """exp(-5 (1 - t/T)^2) for t < T, then 1 (Laine & Aila's ramp-up)."""
    if length <= 0 or iteration >= length:
        return 1.0
    t = max(0.0, float(iteration)) / length
    return math.exp(-5.0 * (1.0 - t) ** 2)
