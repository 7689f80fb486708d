"""Per-channel normalisation: each scheme on hand-computed values, chosen by channel name."""

from __future__ import annotations

import numpy as np
import pytest

from dmsps.data import normalization as nz
from dmsps.errors import DmspsError


def test_zscore_hand_computed():
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    out = nz.parse("zscore").apply(x)
    std = np.sqrt(1.25)
    np.testing.assert_allclose(out, [(v - 2.5) / std for v in (1, 2, 3, 4)], rtol=1e-6)


def test_ct_window_clips_and_scales():
    x = np.array([-1000, -150, 50, 250, 3000], np.float32)
    out = nz.parse("ct-window:-150:250").apply(x)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_nonzero_zscore_ignores_background_and_clips_outliers():
    # background zeros must not enter the statistics and must stay 0
    x = np.array([0, 0, 0, 10, 20, 30, 1000], np.float32)
    out = nz.parse("nonzero-zscore:80").apply(x)
    values = np.array([10, 20, 30, 1000], np.float32)
    top = np.percentile(values, 80)  # linear interpolation: 30 + 0.4 * 970
    clipped = np.minimum(values, top)
    want = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(out[3:], want, rtol=1e-5)
    assert (out[:3] == 0).all()


def test_minmax_and_none():
    x = np.array([2.0, 4.0, 6.0], np.float32)
    np.testing.assert_allclose(nz.parse("minmax").apply(x), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(nz.parse("none").apply(x), x)


@pytest.mark.parametrize(
    ("name", "scheme"),
    [
        ("CT", "ct-window:-150:250"),
        ("ct", "ct-window:-150:250"),
        ("t1", "nonzero-zscore:99.9"),
        ("T1ce", "nonzero-zscore:99.9"),
        ("flair", "nonzero-zscore:99.9"),
        ("MRI", "zscore"),
        ("image", "zscore"),
        ("noNorm", "none"),
        ("rescale_to_0_1", "minmax"),
    ],
)
def test_scheme_follows_the_channel_name(name, scheme):
    assert str(nz.for_channel_name(name)) == scheme


def test_dataset_pin_and_run_override():
    names = ["CT", "PET"]
    assert [str(s) for s in nz.resolve(names)] == ["ct-window:-150:250", "zscore"]
    pinned = {"1": "minmax", "0": "ct-window:-100:200"}
    assert [str(s) for s in nz.resolve(names, pinned)] == ["ct-window:-100:200", "minmax"]
    assert [str(s) for s in nz.resolve(names, pinned, ["none"])] == ["none", "none"]
    with pytest.raises(DmspsError, match="one per channel"):
        nz.resolve(names, None, ["zscore", "zscore", "zscore"])


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("gauss", "unknown normalisation"),
        ("ct-window:1", "takes 2"),
        ("ct-window:250:-150", "low < high"),
        ("ct-window:a:b", "numbers"),
        ("nonzero-zscore:0", "percentile"),
    ],
)
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(DmspsError, match=match):
        nz.parse(spec)


def test_normalise_image_channel_by_channel_and_checkpoint_forms():
    img = np.stack([np.linspace(-500, 500, 8), np.arange(8.0)]).reshape(2, 2, 2, 2)
    out = nz.normalise(img, [nz.parse("ct-window"), nz.parse("zscore")])
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out[0].min() == 0 and out[0].max() == 1
    assert abs(out[1].mean()) < 1e-6
    # release 0.1 checkpoints stored one word; today's store one spec per channel
    assert [str(s) for s in nz.from_checkpoint({"normalisation": "zscore"}, 2)] == ["zscore"] * 2
    meta = {"normalization": ["ct-window:-150:250", "zscore"]}
    assert [str(s) for s in nz.from_checkpoint(meta, 2)] == meta["normalization"]
