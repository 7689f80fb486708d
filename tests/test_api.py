"""The Python API, and the README's example of it run as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import dmsps
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.inference.predictor import Predictor
from tests.support import train_tiny

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def trained(tiny_dataset, tmp_path):
    return train_tiny(tiny_dataset, tmp_path / "run")


def test_predict_matches_the_command_lines_predictor(tiny_dataset, trained):
    ds = Dataset(tiny_dataset)
    case = ds.split("test")[0]
    image, geom = ds.load_image(case)
    model = dmsps.load_model(trained, device="cpu")
    seg = model.predict(image[0], spacing=geom.spacing, uncertainty=True)
    ref, unc = Predictor(trained, "cpu").segment(image, True, False, geom.spacing)
    assert np.array_equal(seg.labels, ref) and np.allclose(seg.uncertainty, unc)
    assert seg.class_names == ds.meta.class_names
    # One slice in, one slice out.
    one = model.predict(image[0, 1])
    assert one.labels.shape == image.shape[2:]
    assert np.array_equal(one.labels, model.predict(image[:, 1:2]).labels[0])
    with pytest.raises(DmspsError, match="expected"):
        model.predict(np.zeros((1, 1, 1, 4, 4, 4)))
    with pytest.raises(DmspsError, match="NaN"):
        model.predict(np.full((2, 8, 8), np.nan))
    with pytest.raises(DmspsError, match="no class"):
        seg.volume("spleen")


def test_the_readme_example_runs(tiny_dataset, trained, tmp_path, monkeypatch, capsys):
    text = README.read_text()
    block = re.search(r"<!-- api-example.*?-->\s*```python\n(.*?)```", text, re.S)
    assert block, "README lost its Python API example"
    # The files the example names, made from the tiny dataset.
    work = tmp_path / "work"
    (work / "runs/acdc/stage2/checkpoints").mkdir(parents=True)
    shutil.copy(trained, work / "runs/acdc/stage2/checkpoints/best.pt")
    ds = Dataset(tiny_dataset)
    shutil.copy(ds.paths(ds.split("test")[0]).images[0], work / "patient001_frame01.nii.gz")
    monkeypatch.chdir(work)
    exec(compile(block.group(1), "README.md", "exec"), {})
    assert (work / "patient001_pred.nii.gz").is_file()
    assert "background" in capsys.readouterr().out
