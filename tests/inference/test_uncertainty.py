"""Label and uncertainty maps from probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from dmsps.inference.uncertainty import normalised_entropy


def test_normalised_entropy_bounds():
    uniform = torch.full((4, 2, 2), 0.25)
    onehot = torch.zeros(4, 2, 2)
    onehot[1] = 1
    assert torch.allclose(normalised_entropy(uniform), torch.ones(2, 2))
    assert torch.allclose(normalised_entropy(onehot), torch.zeros(2, 2), atol=1e-6)
    p = torch.tensor([0.5, 0.5, 0.0, 0.0]).view(4, 1, 1)
    assert normalised_entropy(p).item() == pytest.approx(math.log(2) / math.log(4))
