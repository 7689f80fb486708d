"""Self-ensembling scribble methods: a mean teacher guides the unannotated voxels.

``ustm``: Liu et al., "Weakly-supervised medical image segmentation with scribbles
via uncertainty-aware self-ensembling and transformation-consistent model" (USTM),
Medical Physics 2022. ``s2l``: Lee & Jeong, "Scribble2Label: scribble-supervised cell
segmentation via self-generating pseudo-labels with consistency", MICCAI 2020.

Settings are those of WSL4MIS (HiLab-git/WSL4MIS at a594da8), which benchmarks both on
ACDC: code/train_weakly_supervised_ustm_2D.py and code/train_s2l.py. Their schedules are
written for 60 000 iterations; here they scale with the run's ``iterations`` so that a
shorter budget goes through the same phases (docs/method.md).

Both need the trainer's :class:`~dmsps.training.teacher.EmaTeacher`; the trainer builds it
when ``teacher_decay`` is set and hands it over as ``self.teacher``.
"""

from __future__ import annotations

import math

import torch

from dmsps.training.losses import partial_ce, sigmoid_rampup
from dmsps.training.method_base import Method

#: Teacher passes USTM averages for its uncertainty (WSL4MIS: T = 8).
USTM_PASSES = 8


def teacher_noise(x: torch.Tensor) -> torch.Tensor:
    """Gaussian noise, sd 0.1, clipped to +-0.2 (the global RNG, saved with each run)."""
    return (torch.randn_like(x) * 0.1).clamp(-0.2, 0.2)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum_c p_c log(p_c + 1e-6) per voxel, natural log, (B, 1, *spatial)."""
    return -(probs * torch.log(probs + 1e-6)).sum(1, keepdim=True)


def masked_consistency(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
    """sum(mask * (softmax(s) - p_t)^2) / (2 sum(mask) + 1e-16), WSL4MIS's normalisation.

    The squared difference is summed over classes and masked voxels; the denominator
    counts masked voxels (not voxels times classes), twice.
    """
    dist = (torch.softmax(student, 1) - teacher) ** 2
    return (mask * dist).sum() / (2 * mask.sum() + 1e-16)


class USTM(Method):
    """pCE + w(t) * uncertainty-masked consistency with a mean teacher under rotation.

    Each step rotates the batch by k * 90 degrees in the last two axes (k uniform in
    0..3; the in-plane axes of a 3D patch), adds noise and asks the teacher; the
    student's own (unrotated-input) output, rotated the same way, must match the
    teacher's softmax wherever the teacher is certain: the entropy of the mean of
    ``USTM_PASSES`` noisy teacher passes below (0.75 + 0.25 r(t)) ln 2, r a sigmoid
    ramp over the run. w(t) = pl_weight * r(t): WSL4MIS ramps over all 60 000 iterations
    (in steps of 1 000), so the consistency reaches full weight only at the end.

    The uncertainty passes run as one batch of ``USTM_PASSES`` x B images (WSL4MIS: four
    batches of 2 B), so the teacher's BatchNorm sees one larger batch.
    """

    name = "ustm"
    default_weight = 1.0  # WSL4MIS train_weakly_supervised_ustm_2D.py line 58 (ramped)
    teacher_decay = 0.99  # WSL4MIS update_ema_variables(model, ema_model, 0.99, ...)

    def ramp(self, iteration: int) -> float:
        return sigmoid_rampup(iteration, self.cfg.iterations)

    def loss(self, main, aux, batch, iteration, generator=None):
        sup = self.supervised(main, aux, batch.scribble)
        k = int(torch.randint(4, (1,), generator=generator).item())
        dims = (main.dim() - 2, main.dim() - 1)
        rotated = torch.rot90(batch.image, k, dims)
        with torch.no_grad():
            target = torch.softmax(self.teacher(rotated + teacher_noise(rotated)).float(), 1)
            b = rotated.shape[0]
            many = rotated.repeat(USTM_PASSES, *([1] * (rotated.dim() - 1)))
            passes = torch.softmax(self.teacher(many + teacher_noise(many)).float(), 1)
            mean = passes.reshape(USTM_PASSES, b, *passes.shape[1:]).mean(0)
            threshold = (0.75 + 0.25 * self.ramp(iteration)) * math.log(2)
            mask = (predictive_entropy(mean) < threshold).to(main.dtype)
        cons = 0.5 * (
            masked_consistency(torch.rot90(main, k, dims), target, mask)
            + masked_consistency(torch.rot90(aux, k, dims), target, mask)
        )
        w = self.cfg.pl_weight * self.ramp(iteration)
        certain = mask.mean()
        return sup + w * cons, {
            "sup": sup.detach(),
            "pl": cons.detach(),
            "w": w,
            "certain": certain,
        }


class Scribble2Label(Method):
    """pCE + w * CE on confident pseudo-labels of the unannotated voxels, after a warm-up.

    Scribble2Label keeps, per training pixel, an exponential moving average of the
    network's predictions (WSL4MIS: updated every 100 iterations with weight 0.2, by a
    pass over the whole training set), and from iteration 6 000 of 60 000 trains the
    unannotated pixels whose averaged probability of a class exceeds 0.8 towards that
    class, weight 0.5. Here the average is over weights instead of predictions: the
    pseudo-label is the mean teacher's softmax (main decoder, no noise). A weight EMA
    is the per-step counterpart of the prediction EMA (Tarvainen & Valpola) and needs no
    pass over the training set, which patch training could not map back to voxels
    cheaply. Decay 0.998 gives the same memory, about 500 iterations (100 / 0.2), and
    the warm-up is the same tenth of the run.
    """

    name = "s2l"
    default_weight = 0.5  # WSL4MIS train_s2l.py line 147: loss_ce + 0.5 * loss_u
    teacher_decay = 0.998
    confidence = 0.8
    warmup_fraction = 0.1

    def loss(self, main, aux, batch, iteration, generator=None):
        s, ig = batch.scribble, self.cfg.ignore
        sup = self.supervised(main, aux, s)
        if iteration < int(self.warmup_fraction * self.cfg.iterations):
            zero = sup.new_zeros(())
            return sup, {"sup": sup.detach(), "pl": zero, "w": 0.0, "certain": zero}
        with torch.no_grad():
            probs = torch.softmax(self.teacher(batch.image).float(), 1)
            conf, pseudo = probs.max(1)
            keep = (conf > self.confidence) & (s == ig)
            pseudo = torch.where(keep, pseudo, torch.full_like(pseudo, ig))
        pl = 0.5 * (partial_ce(main, pseudo, ig) + partial_ce(aux, pseudo, ig))
        w = self.cfg.pl_weight
        terms = {"sup": sup.detach(), "pl": pl.detach(), "w": w, "certain": keep.float().mean()}
        return sup + w * pl, terms
