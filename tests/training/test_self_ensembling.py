"""Mean teacher, USTM and Scribble2Label-style pseudo-labels: hand-computed cases.

A stand-in teacher (a function of the input) replaces the EMA network where the test
needs known teacher outputs.
"""

from __future__ import annotations

import math

import pytest
import torch

from dmsps.config import TrainConfig
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.models.checkpoint import load_checkpoint, save_checkpoint
from dmsps.training.losses import sigmoid_rampup
from dmsps.training.method_base import Batch
from dmsps.training.methods import DEFAULT_PL_WEIGHT, build_method
from dmsps.training.self_ensembling import USTM_PASSES, predictive_entropy
from dmsps.training.teacher import EmaTeacher
from dmsps.training.trainer import Trainer
from tests.support import TINY_TRAIN

IGN = 4


def _logits(*pixels: tuple[float, ...]) -> torch.Tensor:
    """(1, C, 1, N) logits whose softmax at pixel i is ``pixels[i]``."""
    return torch.tensor(pixels).log().T.reshape(1, len(pixels[0]), 1, len(pixels))


class _Constant:
    """A teacher that answers the same logits for every image (tiled over the batch)."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits, self.calls = logits, []

    def __call__(self, x):
        self.calls.append(x.shape[0])
        return self.logits.expand(x.shape[0], *self.logits.shape[1:])


def test_ema_teacher_averages_then_decays():
    student = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(2.0)
    teacher = EmaTeacher(student, decay=0.99)
    assert not any(p.requires_grad for p in teacher.net.parameters())
    with torch.no_grad():
        student.weight.fill_(4.0)
    teacher.update(student, 0)  # a = min(1 - 1/1, 0.99) = 0: copy
    assert teacher.net.weight.item() == pytest.approx(4.0)
    with torch.no_grad():
        student.weight.fill_(14.0)
    teacher.update(student, 9)  # a = min(0.9, 0.99) = 0.9
    assert teacher.net.weight.item() == pytest.approx(0.9 * 4 + 0.1 * 14)
    teacher.update(student, 10_000)  # a = 0.99
    assert teacher.net.weight.item() == pytest.approx(0.99 * 5.0 + 0.01 * 14)
    with pytest.raises(ValueError, match="decay"):
        EmaTeacher(student, decay=1.0)


def test_ema_teacher_answers_with_its_main_decoder_only():
    from dmsps.models.unet import DualDecoderNet, ModelConfig

    torch.manual_seed(0)
    net = DualDecoderNet(ModelConfig(in_channels=1, num_classes=3, features=[4, 8]))
    teacher = EmaTeacher(net, decay=0.99)
    x = torch.randn(2, 1, 8, 8)
    asked = []
    teacher.net.aux.register_forward_hook(lambda *a: asked.append("aux"))
    torch.manual_seed(1)
    out = teacher(x)
    assert asked == [] and out.shape == (2, 3, 8, 8)
    # The main decoder's logits, in training mode (the same dropout draws).
    torch.manual_seed(1)
    torch.testing.assert_close(out, teacher.net(x, aux=False))


def test_registry_has_self_ensembling_methods_with_the_papers_weights():
    assert DEFAULT_PL_WEIGHT["ustm"] == 1.0 and DEFAULT_PL_WEIGHT["s2l"] == 0.5
    assert build_method("ustm", IGN).teacher_decay == 0.99
    assert build_method("s2l", IGN).teacher_decay == 0.998


def test_ustm_consistency_with_a_certain_teacher():
    # Teacher sure of class 0 at both pixels; student (0.4, 0.3, 0.2, 0.1) and uniform.
    t = (0.97, 0.01, 0.01, 0.01)
    method = build_method("ustm", IGN, iterations=100)
    method.teacher = _Constant(_logits(t, t))
    main = _logits((0.4, 0.3, 0.2, 0.1), (0.25, 0.25, 0.25, 0.25)).requires_grad_()
    aux = _logits((0.25, 0.25, 0.25, 0.25), (0.25, 0.25, 0.25, 0.25)).requires_grad_()
    scribble = torch.tensor([[[0, IGN]]])
    image = torch.zeros(1, 1, 1, 2)
    g = torch.Generator().manual_seed(0)
    loss, terms = method.loss(main, aux, Batch(image, scribble), 50, generator=g)

    def sq(p):
        return sum((a - b) ** 2 for a, b in zip(p, t, strict=True))

    # All voxels certain (entropy 0.168 < threshold): sum of squares / (2 * 2 voxels).
    d_main = (sq((0.4, 0.3, 0.2, 0.1)) + sq((0.25,) * 4)) / 4
    d_aux = 2 * sq((0.25,) * 4) / 4
    cons = 0.5 * (d_main + d_aux)
    sup = 0.5 * (-math.log(0.4) - math.log(0.25))
    w = sigmoid_rampup(50, 100)
    assert terms["pl"].item() == pytest.approx(cons, rel=1e-5)
    assert terms["w"] == pytest.approx(w)
    assert loss.item() == pytest.approx(sup + w * cons, rel=1e-5)
    assert terms["certain"].item() == 1.0
    # One consistency pass, then USTM_PASSES uncertainty passes in one batch.
    assert method.teacher.calls == [1, USTM_PASSES]
    loss.backward()
    assert main.grad.abs().sum() > 0


def test_ustm_masks_uncertain_voxels():
    method = build_method("ustm", IGN, iterations=100)
    u = (0.25, 0.25, 0.25, 0.25)  # entropy ln 4 > ln 2: never certain
    method.teacher = _Constant(_logits(u, u))
    main = _logits((0.4, 0.3, 0.2, 0.1), u)
    scribble = torch.tensor([[[0, IGN]]])
    loss, terms = method.loss(main, main, Batch(torch.zeros(1, 1, 1, 2), scribble), 99)
    assert terms["pl"].item() == 0.0 and terms["certain"].item() == 0.0
    assert loss.item() == pytest.approx(-math.log(0.4), rel=1e-6)


def test_predictive_entropy_hand_case():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0]).reshape(1, 4, 1, 1)
    assert predictive_entropy(p).item() == pytest.approx(-math.log(0.5 + 1e-6), rel=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_ustm_rotates_the_student_like_the_teacher_input(dims):
    """A teacher and student computing the same function of the image agree under any
    rotation only if the student's output is rotated as the teacher's input was."""

    def seg(x):  # certain two-class logits from a 0/1 image; noise (<= 0.2) cannot flip it
        fg = (x > 0.5).float() * 50
        return torch.cat([50 - fg, fg, torch.zeros_like(fg), torch.zeros_like(fg)], 1)

    class Same:
        def __call__(self, x):
            out = seg(x)
            return out

    shape = (1, 1, 8, 8) if dims == 2 else (1, 1, 2, 8, 8)
    image = torch.zeros(shape)
    image[..., 1:3, 2:7] = 1.0  # not symmetric under any rotation
    scribble = torch.full((1, *shape[2:]), IGN)
    method = build_method("ustm", IGN, iterations=10)
    method.teacher = Same()
    student = seg(image)
    for seed in range(6):  # covers k = 0..3
        g = torch.Generator().manual_seed(seed)
        _, terms = method.loss(student, student, Batch(image, scribble), 5, generator=g)
        assert terms["pl"].item() < 1e-12
    wrong = seg(image.transpose(-1, -2))  # a student that does not match
    g = torch.Generator().manual_seed(0)
    _, terms = method.loss(wrong, wrong, Batch(image, scribble), 5, generator=g)
    assert terms["pl"].item() > 0.01


def test_s2l_warm_up_then_confident_pseudo_labels():
    method = build_method("s2l", IGN, iterations=100)
    # Pixel 0 annotated (class 0); pixel 1 teacher 0.9 for class 2 -> pseudo-label 2;
    # pixel 2 teacher at most 0.7 -> left out.
    method.teacher = _Constant(
        _logits((0.1, 0.1, 0.7, 0.1), (0.05, 0.05, 0.85 + 0.05, 0.0 + 1e-9), (0.7, 0.1, 0.1, 0.1))
    )
    main = _logits((0.4, 0.3, 0.2, 0.1), (0.1, 0.2, 0.6, 0.1), (0.25, 0.25, 0.25, 0.25))
    aux = _logits((0.1, 0.2, 0.3, 0.4), (0.1, 0.1, 0.3, 0.5), (0.25, 0.25, 0.25, 0.25))
    batch = Batch(torch.zeros(1, 1, 1, 3), torch.tensor([[[0, IGN, IGN]]]))
    sup = 0.5 * (-math.log(0.4) - math.log(0.1))
    loss, terms = method.loss(main, aux, batch, 9)  # warm-up: 10 % of 100 iterations
    assert loss.item() == pytest.approx(sup, rel=1e-6) and terms["w"] == 0.0
    loss, terms = method.loss(main, aux, batch, 10)
    pl = 0.5 * (-math.log(0.6) - math.log(0.3))
    assert terms["pl"].item() == pytest.approx(pl, rel=1e-5)
    assert loss.item() == pytest.approx(sup + 0.5 * pl, rel=1e-5)
    assert terms["certain"].item() == pytest.approx(1 / 3)


SMALL = dict(TINY_TRAIN, iterations=4, log_interval=1)


@pytest.mark.parametrize("method", ["ustm", "s2l"])
def test_teacher_methods_resume_exactly(tiny_dataset, tmp_path, method):
    ds = Dataset(tiny_dataset)
    # s2l's pseudo-label term starts after 10 % of the run: iteration 0 of 4.
    Trainer(ds, TrainConfig(method=method, **SMALL), tmp_path / "a", False).fit()
    Trainer(ds, TrainConfig(method=method, stop_at=2, **SMALL), tmp_path / "b", False).fit()
    Trainer(ds, TrainConfig(method=method, **SMALL), tmp_path / "b", False).fit(resume=True)
    a = load_checkpoint(tmp_path / "a/checkpoints/last.pt")
    b = load_checkpoint(tmp_path / "b/checkpoints/last.pt")
    for part in ("model", "teacher"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    # The teacher is a smoothed student: close to it, not equal, after 4 steps.
    assert any(not torch.equal(a["model"][k], a["teacher"][k]) for k in a["model"])


def test_resume_without_teacher_weights_is_refused(tiny_dataset, tmp_path):
    ds = Dataset(tiny_dataset)
    out = tmp_path / "r"
    Trainer(ds, TrainConfig(method="ustm", stop_at=2, **SMALL), out, False).fit()
    ck = load_checkpoint(out / "checkpoints/last.pt")
    del ck["teacher"]
    save_checkpoint(out / "checkpoints/last.pt", ck)
    with pytest.raises(DmspsError, match="mean-teacher"):
        Trainer(ds, TrainConfig(method="ustm", **SMALL), out, False).fit(resume=True)
