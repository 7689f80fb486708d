"""Scribble expansion: confident largest components, scribbles kept, flips mapped back."""

from __future__ import annotations

import numpy as np
import torch

from dmsps.pipeline.expansion import expand_case

IGN = 4


def test_expansion_keeps_confident_largest_components_and_scribbles():
    # one slice 1x6x6; class 1 confident in two blobs (sizes 4 and 1); rest uncertain
    probs = torch.full((4, 1, 6, 6), 0.25)
    conf = torch.tensor([0.0, 1.0, 0.0, 0.0]).view(4, 1)
    for y, x in [(0, 0), (0, 1), (1, 0), (1, 1), (4, 4)]:
        probs[:, 0, y, x] = conf[:, 0]
    scribble = np.full((1, 6, 6), IGN, np.int16)
    scribble[0, 5, 0] = 3  # an uncertain pixel that is scribbled stays annotated
    scribble[0, 4, 4] = 2  # the scribble wins over the model where both exist
    seeds = expand_case(probs, scribble, threshold=0.1, ignore=IGN, keep_largest=True)
    assert (seeds[0, :2, :2] == 1).all()  # the large confident blob
    assert seeds[0, 4, 4] == 2  # small blob removed, scribble kept
    assert seeds[0, 5, 0] == 3
    assert (seeds == IGN).sum() == 36 - 4 - 2


class _PerPixel(torch.nn.Module):
    """A 1x1-conv dual-branch stand-in: exactly flip-equivariant, position-dependent output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main, self.aux = torch.nn.Conv2d(1, 4, 1), torch.nn.Conv2d(1, 4, 1)

    def forward(self, x, aux: bool = True):
        return (self.main(x), self.aux(x)) if aux else self.main(x)


class _Predictor:
    """The part of inference.predict.Predictor that expansion uses, around _PerPixel."""

    def __init__(self) -> None:
        from dmsps.inference.inferers import ResizedSliceInferer

        self.inferer = ResizedSliceInferer((16, 16), channels_last=False)
        self.model = _PerPixel()

    def probabilities(self, image, outputs, spacing=None):
        return self.inferer(self.model, image, outputs)


def test_flip_tta_maps_predictions_back_to_the_image_grid():
    from dmsps.pipeline.expansion import tta_probs

    image = np.random.default_rng(0).random((1, 3, 10, 12)).astype(np.float32)
    predictor = _Predictor()
    plain = tta_probs(predictor, image, flips=False)
    tta = tta_probs(predictor, image, flips=True)
    # An equivariant model gains nothing from flips; a wrongly flipped-back
    # prediction (e.g. along Z) would not line up with the image.
    assert torch.allclose(tta, plain, atol=1e-5)


def test_background_margin_leaves_a_band_around_the_structures_unlabelled():
    # 1 x 7 x 7; class 1 confident on a 3 x 3 square, background confident elsewhere.
    probs = torch.zeros((4, 1, 7, 7))
    probs[0] = 1.0
    probs[:, 0, 2:5, 2:5] = torch.tensor([0.0, 1.0, 0.0, 0.0]).view(4, 1, 1)
    scribble = np.full((1, 7, 7), IGN, np.int16)
    scribble[0, 1, 3] = 0  # a background scribble inside the band stays annotated
    plain = expand_case(probs, scribble, threshold=0.1, ignore=IGN, keep_largest=True)
    assert (plain[0] != IGN).all()
    seeds = expand_case(
        probs, scribble, threshold=0.1, ignore=IGN, keep_largest=True, background_margin=1
    )
    assert (seeds[0, 2:5, 2:5] == 1).all()  # the structure's seeds are untouched
    band = np.zeros((7, 7), bool)
    band[1:6, 2:5] = band[2:5, 1:6] = True  # 4-connected ring of width 1
    band[2:5, 2:5] = False
    band[1, 3] = False  # scribbled
    assert (seeds[0][band] == IGN).all()
    assert (seeds[0][~band & (plain[0] == 0)] == 0).all()  # background beyond the band
    # Two voxels wide reaches two further in-plane, never across slices.
    wide = expand_case(
        probs.repeat(1, 2, 1, 1)[:, :2],
        np.full((2, 7, 7), IGN, np.int16),
        threshold=0.1,
        ignore=IGN,
        keep_largest=True,
        background_margin=2,
    )
    assert wide[0, 0, 3] == IGN and wide[0, 3, 0] == IGN and wide[0, 0, 0] == 0


def test_background_margin_settings_are_checked():
    import pytest

    from dmsps.config import ExpandConfig
    from dmsps.errors import DmspsError

    with pytest.raises(DmspsError, match="background_margin must be >= 0"):
        ExpandConfig(background_margin=-1).check()
    with pytest.raises(DmspsError, match="needs target ignore"):
        ExpandConfig(background_margin=2, target="dense").check()
    ExpandConfig(background_margin=2).check()
