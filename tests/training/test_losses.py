"""Loss terms checked against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from dmsps.errors import DmspsError
from dmsps.training.losses import (
    authors_soft_ce,
    background_beyond,
    dice_loss,
    partial_ce,
    sigmoid_rampup,
    soft_ce,
)
from dmsps.training.method_base import Batch
from dmsps.training.methods import build_method

IGN = 4


def test_partial_ce_averages_over_annotated_pixels_only():
    logits = torch.zeros(1, 4, 1, 3)
    logits[0, 1, 0, 0] = math.log(3.0)  # pixel 0: p(class1) = 3 / 6 = 0.5
    target = torch.tensor([[[1, IGN, IGN]]])
    assert partial_ce(logits, target, IGN).item() == pytest.approx(-math.log(0.5))


def test_ignored_pixels_contribute_nothing_not_even_gradient():
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 5))
    target[:, :, 2:] = IGN
    partial_ce(logits, target, IGN).backward()
    assert torch.all(logits.grad[:, :, :, 2:] == 0)
    assert torch.any(logits.grad[:, :, :, :2] != 0)


def test_partial_ce_with_no_annotation_is_zero():
    logits = torch.randn(1, 4, 3, 3, requires_grad=True)
    loss = partial_ce(logits, torch.full((1, 3, 3), IGN), IGN)
    loss.backward()
    assert loss.item() == 0.0


def test_pce_with_full_scribble_equals_ordinary_ce():
    torch.manual_seed(0)
    main, aux = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    y = torch.randint(0, 4, (2, 6, 6))
    loss, _ = build_method("pce", IGN).loss(main, aux, Batch(torch.zeros(2, 1, 6, 6), y), 0)
    expected = 0.5 * (F.cross_entropy(main, y) + F.cross_entropy(aux, y))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_soft_ce_closed_form():
    p = torch.tensor([0.7, 0.2, 0.1]).view(1, 3, 1, 1)
    q = torch.tensor([0.5, 0.25, 0.25]).view(1, 3, 1, 1)
    expected = -(0.5 * math.log(0.7) + 0.25 * math.log(0.2) + 0.25 * math.log(0.1))
    assert soft_ce(p.log(), q).item() == pytest.approx(expected, rel=1e-6)


def test_authors_form_hand_case():
    # Saturated logits: softmax(z) = (1, 0, 0, 0); softmax of that is (e, 1, 1, 1) / (e + 3),
    # so with q = (1, 0, 0, 0) the loss is -log(e / (e + 3)) = 0.7437, the floor the
    # authors' logged pseudo-label loss sits at. Ours is ~0 there.
    z = torch.tensor([100.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1)
    q = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1)
    floor = -math.log(math.e / (math.e + 3))
    assert authors_soft_ce(z, q).item() == pytest.approx(floor, rel=1e-6)
    assert floor == pytest.approx(0.7437, abs=1e-4)
    assert soft_ce(F.log_softmax(z, 1), q).item() == pytest.approx(0.0, abs=1e-6)
    # A general case by hand: z = log(1, 2, 5) -> p = (0.125, 0.25, 0.625);
    # softmax(p) = exp(p) / sum exp(p); H = -sum q log softmax(p).
    z = torch.tensor([1.0, 2.0, 5.0]).log().view(1, 3, 1, 1)
    q = torch.tensor([0.5, 0.25, 0.25]).view(1, 3, 1, 1)
    e = [math.exp(v) for v in (0.125, 0.25, 0.625)]
    s = sum(e)
    expected = -(0.5 * math.log(e[0] / s) + 0.25 * math.log(e[1] / s) + 0.25 * math.log(e[2] / s))
    assert authors_soft_ce(z, q).item() == pytest.approx(expected, rel=1e-6)


def test_authors_form_has_a_much_smaller_gradient():
    torch.manual_seed(4)
    z = (3 * torch.randn(2, 4, 6, 6)).requires_grad_()
    q = torch.softmax(torch.randn(2, 4, 6, 6), 1)
    (g_ours,) = torch.autograd.grad(soft_ce(F.log_softmax(z, 1), q), z)
    (g_auth,) = torch.autograd.grad(authors_soft_ce(z, q), z)
    assert g_auth.norm() < 0.5 * g_ours.norm()


def test_dmsps_with_authors_form_and_no_rampup():
    torch.manual_seed(5)
    main, aux = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    y = torch.full((1, 3, 3), IGN)
    y[0, 0, 0] = 2
    alpha = torch.rand((), generator=torch.Generator().manual_seed(7)).item()
    m = build_method("dmsps", IGN, rampup=0, pl_loss="authors")
    assert m.weight(0) == 8.0
    gen = torch.Generator().manual_seed(7)
    loss, _ = m.loss(main, aux, Batch(main, y), 0, gen)
    q = alpha * main.softmax(1) + (1 - alpha) * aux.softmax(1)
    sup = 0.5 * (
        F.cross_entropy(main, y, ignore_index=IGN) + F.cross_entropy(aux, y, ignore_index=IGN)
    )
    # The authors' scripts: torch's cross-entropy given softmax outputs and soft targets.
    pl = 0.5 * (F.cross_entropy(main.softmax(1), q) + F.cross_entropy(aux.softmax(1), q))
    assert loss.item() == pytest.approx((sup + 8.0 * pl).item(), rel=1e-6)
    with pytest.raises(DmspsError, match="soft-ce"):
        build_method("dmsps", IGN, pl_loss="double")


def test_rampup_values():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == 1.0
    assert sigmoid_rampup(5000, 100) == 1.0
    m = build_method("dmsps", IGN)
    assert m.weight(0) == pytest.approx(8 * math.exp(-5))
    assert m.weight(100) == 8.0


def _dmsps_reference(main, aux, y, alpha, w):
    """The docs/method.md formula written out with explicit loops over decoders."""
    sup = 0.5 * (
        F.cross_entropy(main, y, ignore_index=IGN) + F.cross_entropy(aux, y, ignore_index=IGN)
    )
    q = alpha * main.softmax(1) + (1 - alpha) * aux.softmax(1)
    h = [(-(q * F.log_softmax(o, 1)).sum(1)).mean() for o in (main, aux)]
    return sup + w * 0.5 * (h[0] + h[1])


def test_dmsps_loss_equals_closed_form_and_pseudo_label_has_no_gradient():
    torch.manual_seed(1)
    main = torch.randn(2, 4, 5, 5, requires_grad=True)
    aux = torch.randn(2, 4, 5, 5, requires_grad=True)
    y = torch.randint(0, 5, (2, 5, 5))
    gen = torch.Generator().manual_seed(3)
    alpha = torch.rand((), generator=torch.Generator().manual_seed(3)).item()
    method = build_method("dmsps", IGN, pl_loss="soft-ce")
    loss, terms = method.loss(main, aux, Batch(torch.zeros(2, 1, 5, 5), y), 100, gen)
    assert terms["alpha"] == pytest.approx(alpha)
    ref = _dmsps_reference(main, aux, y, alpha, 8.0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    # Gradient: q must be a constant. Compare with the reference where q is detached.
    g_ours = torch.autograd.grad(loss, (main, aux))
    q = (alpha * main.softmax(1) + (1 - alpha) * aux.softmax(1)).detach()
    sup = 0.5 * (
        F.cross_entropy(main, y, ignore_index=IGN) + F.cross_entropy(aux, y, ignore_index=IGN)
    )
    ref_detached = sup + 8.0 * 0.5 * sum(
        (-(q * F.log_softmax(o, 1)).sum(1)).mean() for o in (main, aux)
    )
    g_ref = torch.autograd.grad(ref_detached, (main, aux))
    for a, b in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # ... and differs from letting gradient flow through q.
    g_flow = torch.autograd.grad(_dmsps_reference(main, aux, y, alpha, 8.0), (main, aux))
    assert not torch.allclose(g_ours[0], g_flow[0], atol=1e-4)


def test_dice_loss_hand_case():
    # two pixels, two classes; probs exactly one-hot and correct -> loss 0
    target = torch.tensor([[[0, 1]]])
    probs = F.one_hot(target, 2).movedim(-1, 1).float()
    assert dice_loss(probs, target).item() == pytest.approx(0.0, abs=1e-6)
    # uniform probs: per class inter = 0.5, denom = 0.5 + 1 -> dice = 1/1.5
    uniform = torch.full((1, 2, 1, 2), 0.5)
    assert dice_loss(uniform, target).item() == pytest.approx(1 - 1 / 1.5, rel=1e-4)


def test_dmpls_uses_hard_label_dice_with_weight_half():
    torch.manual_seed(2)
    main, aux = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    y = torch.full((1, 4, 4), IGN)
    gen = torch.Generator().manual_seed(5)
    alpha = torch.rand((), generator=torch.Generator().manual_seed(5)).item()
    loss, _ = build_method("dmpls", IGN).loss(main, aux, Batch(main, y), 0, gen)
    hard = (alpha * main.softmax(1) + (1 - alpha) * aux.softmax(1)).argmax(1)
    expected = 0.5 * 0.5 * (dice_loss(main.softmax(1), hard) + dice_loss(aux.softmax(1), hard))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_full_needs_labels():
    with pytest.raises(ValueError):
        build_method("full", IGN).loss(
            torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), Batch(None, None, None), 0
        )


@pytest.mark.parametrize("form", ["soft-ce", "authors"])
@pytest.mark.parametrize("method", ["dmsps", "dmpls"])
def test_pseudo_label_terms_take_background_beyond_the_volume(form, method):
    """A patch's padding (valid False) has no image: its pseudo-label is background
    whatever the decoders say there, so a network calling the padding foreground pays
    for it, and the loss equals the one with the decoders' mix replaced by background."""
    torch.manual_seed(4)
    main, aux = torch.randn(2, 4, 3, 6), torch.randn(2, 4, 3, 6)
    y = torch.randint(0, 5, (2, 3, 6))
    valid = torch.ones(2, 3, 6, dtype=torch.bool)
    valid[:, :, 4:] = False  # the last two columns lie beyond the volume
    y[~valid] = IGN  # as the sampler pads scribbles

    def loss(m, a, v):
        built = build_method(method, IGN, pl_loss=form, rampup=0)
        return built.loss(m, a, Batch(None, y, None, v), 0, torch.Generator().manual_seed(7))[0]

    def padding_says(cls):
        m, a = main.clone(), aux.clone()
        m[..., 4:], a[..., 4:] = 0.0, 0.0
        m[:, cls, :, 4:], a[:, cls, :, 4:] = 20.0, 20.0  # both decoders, confidently
        return m, a

    # Confident foreground on the padding costs more than confident background ...
    assert loss(*padding_says(2), valid).item() > loss(*padding_says(0), valid).item() + 0.1
    # ... while without a mask the decoders' own agreement there is rewarded either way
    # (per voxel for the soft cross-entropy; the Dice term weighs classes by volume).
    if method == "dmsps":
        assert loss(*padding_says(2), None).item() == pytest.approx(
            loss(*padding_says(0), None).item(), rel=1e-5
        )
    # On real voxels nothing changes: with no padding the mask is a no-op.
    everywhere = torch.ones_like(valid)
    assert loss(main, aux, everywhere).item() == pytest.approx(loss(main, aux, None).item())


def test_background_beyond_sets_only_padding_to_certain_background():
    q = torch.softmax(torch.randn(2, 3, 4, 5), 1)
    valid = torch.ones(2, 4, 5, dtype=torch.bool)
    valid[1, :, :2] = False
    out = background_beyond(q, valid)
    assert torch.equal(out[valid.unsqueeze(1).expand_as(q)], q[valid.unsqueeze(1).expand_as(q)])
    certain_bg = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 4, 2)
    assert torch.equal(out[1, :, :, :2], certain_bg)
    assert background_beyond(q, None) is q
