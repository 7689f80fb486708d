"""What a training method is: the ``Method`` base class and the ``Batch`` it sees.

Every method module builds on this one; ``methods.py`` collects them into ``METHODS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dmsps.training.losses import partial_ce


@dataclass
class Batch:
    image: torch.Tensor  # (B, C_in, *spatial) float, spatial = (H, W) or (D, H, W)
    scribble: torch.Tensor  # (B, *spatial) long, ignore = num_classes
    label: torch.Tensor | None = None  # (B, *spatial) dense labels, only for `full`
    # (B, *spatial) bool: False where a patch reaches beyond its volume (None: all real).
    # The pseudo-label terms take background there (losses.background_beyond).
    valid: torch.Tensor | None = None


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
    #: Weight of the second loss term when ``pl_weight`` is not given (the method's paper).
    default_weight = 0.0
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
