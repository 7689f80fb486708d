"""Contract for every registered training method, 2D and 3D; the `full` loss with padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dmsps.errors import DmspsError
from dmsps.training.losses import dice_loss
from dmsps.training.method_base import Batch
from dmsps.training.methods import METHODS, build_method
from dmsps.training.teacher import EmaTeacher

IGN = 4


def _batch(spatial: tuple[int, ...], with_label: bool):
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 4, (2, *spatial), generator=gen)
    scribble = torch.full_like(label, IGN)
    scribble[..., :2] = label[..., :2]
    image = torch.randn(2, 1, *spatial, generator=gen)
    return Batch(image, scribble, label if with_label else None)


class _TwoHeads(torch.nn.Module):
    """A stand-in dual-decoder network: one 1x1 convolution, answered twice."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = (torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d)(1, 4, 1)

    def forward(self, x, aux=True):
        out = self.conv(x)
        return (out, out) if aux else out


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("spatial", [(6, 7), (3, 6, 7)])
def test_every_method_gives_a_finite_loss_that_trains_both_decoders(name, spatial):
    method = build_method(name, IGN, iterations=100)
    if method.teacher_decay is not None:  # as the trainer does: a mean teacher
        method.teacher = EmaTeacher(_TwoHeads(len(spatial)), method.teacher_decay)
    batch = _batch(spatial, with_label=method.needs_labels)
    main = torch.randn(2, 4, *spatial, requires_grad=True)
    aux = torch.randn(2, 4, *spatial, requires_grad=True)
    loss, terms = method.loss(main, aux, batch, iteration=50, generator=torch.Generator())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in terms.values())
    loss.backward()
    assert main.grad.abs().sum() > 0 and aux.grad.abs().sum() > 0


def test_unknown_method_names_the_choices():
    with pytest.raises(DmspsError, match=r"choose from .*dmsps"):
        build_method("magic", IGN)


def test_full_leaves_padded_voxels_out():
    """A patch padded past the volume edge holds the ignore value in its label: the loss
    must equal CE + Dice over the real voxels only."""
    gen = torch.Generator().manual_seed(1)
    main, aux = torch.randn(1, 4, 5, 6, generator=gen), torch.randn(1, 4, 5, 6, generator=gen)
    label = torch.randint(0, 4, (1, 5, 6), generator=gen)
    padded = label.clone()
    padded[:, :, 4:] = IGN
    loss, _ = build_method("full", IGN).loss(main, aux, Batch(main, padded, padded), 0)
    m, a, y = main[..., :4].contiguous(), aux[..., :4].contiguous(), label[..., :4].contiguous()
    ce = 0.5 * (F.cross_entropy(m, y) + F.cross_entropy(a, y))
    dl = 0.5 * (dice_loss(torch.softmax(m, 1), y) + dice_loss(torch.softmax(a, 1), y))
    torch.testing.assert_close(loss, 0.5 * (ce + dl))
