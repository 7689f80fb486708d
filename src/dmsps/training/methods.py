"""Training methods: each turns (model outputs, batch, iteration) into a loss.

The training loop is shared; a method is chosen by name (``METHODS``). All methods use
both decoders so that every method trains the same network and costs the same per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dmsps.errors import DmspsError
from dmsps.training.losses import PL_LOSSES, dice_loss, partial_ce, sigmoid_rampup


@dataclass
class Batch:
    image: torch.Tensor  # (B, C_in, *spatial) float, spatial = (H, W) or (D, H, W)
    scribble: torch.Tensor  # (B, *spatial) long, ignore = num_classes
    label: torch.Tensor | None = None  # (B, *spatial) dense labels, only for `full`


@dataclass
class MethodConfig:
    ignore: int
    pl_weight: float = 8.0
    rampup: int = 100
    pl_loss: str = "authors"  # see PL_LOSSES
    iterations: int = 0  # the stage's length, for schedules that span the run (ustm, s2l)


class Method:
    """Base: subclasses implement ``loss``.

    Class flags ask the trainer for more: ``needs_labels`` dense labels; ``teacher_decay``
    a mean teacher (set as ``self.teacher`` before training); ``grows_seeds`` training on
    random-walker pseudo-labels grown from the scribbles instead of the scribbles.
    """

    name = "base"
    needs_labels = False
    teacher_decay: float | None = None
    grows_seeds = False
    teacher = None  # an EmaTeacher when teacher_decay is set

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg

    def supervised(self, main: torch.Tensor, aux: torch.Tensor, target: torch.Tensor):
        ig = self.cfg.ignore
        return 0.5 * (partial_ce(main, target, ig) + partial_ce(aux, target, ig))

    def loss(
        self,
        main: torch.Tensor,
        aux: torch.Tensor,
        batch: Batch,
        iteration: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        raise NotImplementedError


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

    ``pl_loss`` picks the authors' published H(q, softmax(softmax(z))) ("authors", the
    default: it measured better) or the paper's formula H(q, softmax(z)) ("soft-ce").
    """

    name = "dmsps"

    def weight(self, iteration: int) -> float:
        return self.cfg.pl_weight * sigmoid_rampup(iteration, self.cfg.rampup)

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        q, alpha = _mixed_pseudo_label(main, aux, generator)
        form = PL_LOSSES[self.cfg.pl_loss]
        pl = 0.5 * (form(main, q) + form(aux, q))
        w = self.weight(iteration)
        return sup + w * pl, {"sup": sup.detach(), "pl": pl.detach(), "w": w, "alpha": alpha}


class DMPLS(Method):
    """MICCAI 2022 predecessor: hard pseudo-label argmax(q) with a Dice loss, weight 0.5."""

    name = "dmpls"

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        q, alpha = _mixed_pseudo_label(main, aux, generator)
        hard = q.argmax(1)
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


METHODS: dict[str, type[Method]] = {m.name: m for m in (PCE, DMSPS, DMPLS, Full)}

# Per-method default weight of the second loss term (the papers' settings).
DEFAULT_PL_WEIGHT = {"dmsps": 8.0, "dmpls": 0.5, "pce": 0.0, "full": 0.0}


def register(cls: type[Method], default_weight: float) -> type[Method]:
    """Add a Method subclass defined in another module to METHODS, with its default weight.

    Such modules import Method from here, so their classes cannot be listed above.
    """
    METHODS[cls.name] = cls
    DEFAULT_PL_WEIGHT[cls.name] = default_weight
    return cls


def build_method(
    name: str,
    ignore: int,
    pl_weight: float | None = None,
    rampup: int = 100,
    pl_loss: str = "authors",
    iterations: int = 0,
):
    if name not in METHODS:
        raise DmspsError(f"unknown method '{name}' (choose from {', '.join(METHODS)})")
    if pl_loss not in PL_LOSSES:
        raise DmspsError(f"unknown pl_loss '{pl_loss}' (choose from {', '.join(PL_LOSSES)})")
    w = DEFAULT_PL_WEIGHT[name] if pl_weight is None else pl_weight
    cfg = MethodConfig(
        ignore=ignore, pl_weight=w, rampup=rampup, pl_loss=pl_loss, iterations=iterations
    )
    return METHODS[name](cfg)


# The scribble baselines (em, tv, mumford-shah, pce-dice, gatedcrf, ustm, s2l,
# random-walker) register themselves. Imported last, once everything they use is defined;
# importing one of them first works as well.
import dmsps.training.baselines  # noqa: E402
import dmsps.training.random_walker  # noqa: E402
import dmsps.training.self_ensembling  # noqa: E402, F401
