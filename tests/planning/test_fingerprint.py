"""A dataset's fingerprint: geometry from the headers, statistics from a sample."""

from __future__ import annotations

import numpy as np
import pytest

from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.planning.fingerprint import Fingerprint, compute_fingerprint


def test_fingerprint_of_a_tiny_dataset(tiny_dataset_3d):
    ds = Dataset(tiny_dataset_3d)
    fp = compute_fingerprint(ds, progress=False)
    assert fp.cases == len(ds.split("train")) + len(ds.split("val")) == 4
    assert fp.median_spacing == pytest.approx([5.0, 1.5, 1.25])  # conftest's geometry
    assert fp.median_shape == [8, 32, 32]
    assert fp.median_extent_mm == pytest.approx([40.0, 48.0, 40.0])
    assert [c.name for c in fp.channels] == ds.meta.channel_names
    assert fp.normalization == ["zscore", "zscore"]
    assert sum(fp.class_fractions) == pytest.approx(1.0)
    assert all(f > 0 for f in fp.class_fractions)
    # Intensities of the labelled voxels: the discs are drawn at 0.4 .. 0.9 (+ noise).
    assert 0.3 < fp.channels[0].mean < 1.0 and fp.channels[0].p005 < fp.channels[0].p995
    assert 0 < fp.scribble_density < 0.5 and fp.scribbled_slices == 1.0
    assert Fingerprint.from_dict(fp.to_dict()) == fp


def test_a_dataset_without_training_cases_cannot_be_planned(tiny_dataset_3d):
    (tiny_dataset_3d / "splits.json").write_text('{"train": [], "val": [], "test": []}')
    with pytest.raises(DmspsError, match="no training cases to plan from"):
        compute_fingerprint(Dataset(tiny_dataset_3d), progress=False)


def test_header_geometry_is_read_without_the_voxels(tiny_dataset_3d, monkeypatch):
    """Spacings and shapes of every case come from the headers (cheap on CT-sized data);
    only the sample is loaded."""
    ds = Dataset(tiny_dataset_3d)
    loaded = []
    real = Dataset.load_image
    monkeypatch.setattr(Dataset, "load_image", lambda self, c: loaded.append(c) or real(self, c))
    monkeypatch.setattr("dmsps.planning.fingerprint.SAMPLE_CASES", 2)
    fp = compute_fingerprint(ds, progress=False)
    assert len(fp.shapes) == 4 and len(loaded) == fp.sampled_cases == 2
    assert np.asarray(fp.spacings).shape == (4, 3)
