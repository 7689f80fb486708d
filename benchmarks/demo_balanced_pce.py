"""Run any dmsps command with a class-balanced partial cross-entropy (an experiment).

Each scribbled class present in the batch weighs the same in the scribble loss, instead
of each scribbled voxel. Tried on the abdominal demo against a class that never came
alive (docs/3d.md, 2026-12-03); not a setting, since it lowered the result there.

    python benchmarks/demo_balanced_pce.py demo --task abdomen --phase venous ...
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import dmsps.training.methods as methods


def balanced_partial_ce(logits: torch.Tensor, target: torch.Tensor, ignore: int) -> torch.Tensor:
    """Mean over the scribbled classes present of each class's mean cross-entropy."""
    valid = target != ignore
    t = torch.where(valid, target, torch.zeros_like(target)).long()
    ce = F.cross_entropy(logits, t, reduction="none")
    counts = torch.bincount(t[valid], minlength=logits.shape[1]).to(ce.dtype)
    w = torch.where(valid, 1.0 / counts.clamp_min(1)[t], torch.zeros_like(ce))
    return (ce * w).sum() / (counts > 0).sum().clamp_min(1)


if __name__ == "__main__":
    methods.partial_ce = balanced_partial_ce  # Method.supervised looks it up at call time
    from dmsps.cli import main

    sys.exit(main(sys.argv[1:]))
