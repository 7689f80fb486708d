"""The methods of the DMSPS paper's main comparison: the scribble-only baseline (pce),
DMSPS, its MICCAI 2022 predecessor DMPLS, and dense supervision (full, the upper bound).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dmsps.training.losses import (
    PL_LOSSES,
    background_beyond,
    dice_loss,
    partial_ce,
    sigmoid_rampup,
)
from dmsps.training.method_base import Method


class PCE(Method):
    """Partial cross-entropy on scribbles only (the scribble-only baseline)."""

    name = "pce"

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        return sup, {"sup": sup.detach()}


def _mixed_pseudo_label(main, aux, generator):
    """q = alpha p1 + (1 - alpha) p2 with one alpha ~ U(0, 1) per iteration, no gradient."""
    alpha = torch.rand((), generator=generator).item()
    with torch.no_grad():
        q = alpha * torch.softmax(main.detach(), 1) + (1 - alpha) * torch.softmax(aux.detach(), 1)
    return q, alpha


class DMSPS(Method):
    """pCE + lambda(t) * soft cross-entropy to the dynamically mixed soft pseudo-label.

    Voxels beyond the volume (patch padding) take background as their pseudo-label.
    ``pl_loss`` picks the authors' published H(q, softmax(softmax(z))) ("authors", the
    default: it measured better) or the paper's formula H(q, softmax(z)) ("soft-ce").
    """

    name = "dmsps"
    default_weight = 8.0

    def weight(self, iteration: int) -> float:
        return self.cfg.pl_weight * sigmoid_rampup(iteration, self.cfg.rampup)

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        q, alpha = _mixed_pseudo_label(main, aux, generator)
        q = background_beyond(q, batch.valid)
        form = PL_LOSSES[self.cfg.pl_loss]
        pl = 0.5 * (form(main, q) + form(aux, q))
        w = self.weight(iteration)
        return sup + w * pl, {"sup": sup.detach(), "pl": pl.detach(), "w": w, "alpha": alpha}


class DMPLS(Method):
    """MICCAI 2022 predecessor: hard pseudo-label argmax(q) with a Dice loss, weight 0.5."""

    name = "dmpls"
    default_weight = 0.5

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        q, alpha = _mixed_pseudo_label(main, aux, generator)
        hard = background_beyond(q, batch.valid).argmax(1)
        pl = 0.5 * (
            dice_loss(torch.softmax(main, 1), hard) + dice_loss(torch.softmax(aux, 1), hard)
        )
        w = self.cfg.pl_weight
        return sup + w * pl, {"sup": sup.detach(), "pl": pl.detach(), "w": w, "alpha": alpha}


class Full(Method):
    """Dense supervision (upper bound): CE + Dice on both decoders.

    Voxels holding the ignore value (patch padding beyond a volume's edge) are left out
    of both terms; with none present this is plain CE + Dice.
    """

    name = "full"
    needs_labels = True

    def loss(self, main, aux, batch, iteration, generator=None):
        if batch.label is None:
            raise ValueError("method 'full' needs dense labels")
        y, ig = batch.label, self.cfg.ignore
        valid = y != ig
        if bool(valid.all()):
            ce = 0.5 * (F.cross_entropy(main, y) + F.cross_entropy(aux, y))
            mask = None
        else:
            ce = 0.5 * (partial_ce(main, y, ig) + partial_ce(aux, y, ig))
            mask = valid
        y = torch.where(valid, y, torch.zeros_like(y))
        dl = 0.5 * (
            dice_loss(torch.softmax(main, 1), y, mask=mask)
            + dice_loss(torch.softmax(aux, 1), y, mask=mask)
        )
        return 0.5 * (ce + dl), {"ce": ce.detach(), "dice": dl.detach()}
