"""Training methods by name: ``METHODS`` and ``build_method``.

Each method turns (model outputs, batch, iteration) into a loss; the training loop is
shared. This module collects the methods from the modules that define them; none of
them writes into the registry, so the import order does not matter. All methods use
both decoders, so every method trains the same network at the same cost per step.
A new method is one class in its own module (subclassing ``method_base.Method``), one
entry in ``METHOD_CLASSES`` and one test (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

from dmsps.errors import DmspsError
from dmsps.training.baselines import EntropyMinimisation, MumfordShah, PCEDice, TotalVariation
from dmsps.training.gated_crf import GatedCRF
from dmsps.training.losses import PL_LOSSES
from dmsps.training.method_base import Method, MethodConfig
from dmsps.training.paper_methods import DMPLS, DMSPS, PCE, Full
from dmsps.training.random_walker import RandomWalkerLabels
from dmsps.training.self_ensembling import USTM, Scribble2Label

#: Every method, in the order help texts list them: the paper's, then the baselines.
METHOD_CLASSES: tuple[type[Method], ...] = (
    PCE,
    DMSPS,
    DMPLS,
    Full,
    EntropyMinimisation,
    TotalVariation,
    MumfordShah,
    PCEDice,
    GatedCRF,
    USTM,
    Scribble2Label,
    RandomWalkerLabels,
)

METHODS: dict[str, type[Method]] = {m.name: m for m in METHOD_CLASSES}

#: Each method's default weight of its second loss term (the papers' settings).
DEFAULT_PL_WEIGHT: dict[str, float] = {m.name: m.default_weight for m in METHOD_CLASSES}


def method_help() -> str:
    """``"pce | dmsps | ..."`` for --help texts, from the registry."""
    return " | ".join(METHODS)


def build_method(
    name: str,
    ignore: int,
    pl_weight: float | None = None,
    rampup: int = 100,
    pl_loss: str = "authors",
    iterations: int = 0,
) -> Method:
    if name not in METHODS:
        raise DmspsError(f"unknown method '{name}' (choose from {', '.join(METHODS)})")
    if pl_loss not in PL_LOSSES:
        raise DmspsError(f"unknown pl_loss '{pl_loss}' (choose from {', '.join(PL_LOSSES)})")
    w = DEFAULT_PL_WEIGHT[name] if pl_weight is None else pl_weight
    cfg = MethodConfig(
        ignore=ignore, pl_weight=w, rampup=rampup, pl_loss=pl_loss, iterations=iterations
    )
    return METHODS[name](cfg)
