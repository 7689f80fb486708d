"""benchmarks/confusion.py: where the missed voxels went, and how deep they lay."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from tests.benchmarks import load_benchmark


def test_a_missed_rim_is_the_surface_layer_only():
    bench = load_benchmark("confusion")
    truth = np.zeros((9, 9, 9), np.int64)
    truth[1:8, 1:8, 1:8] = 1  # a 7-voxel cube: layers 1 (surface), 2, 3, 4 (centre voxel)
    truth[0, 0, 0] = 2
    pred = np.zeros_like(truth)
    pred[2:7, 2:7, 2:7] = 1  # everything but the surface layer
    pred[0, 0, 0] = 1  # class 2 called class 1
    layers = bench.layer_index(truth == 1)
    assert [int((layers == k).sum()) for k in (1, 2, 3, 4)] == [7**3 - 5**3, 5**3 - 3**3, 26, 1]
    result = bench.analyse([(truth, pred)], 3)
    matrix = np.array(result["matrix"])
    assert matrix[1, 0] == 7**3 - 5**3 and matrix[1, 1] == 5**3 and matrix[2, 1] == 1
    assert result["layer_missed_share"][1] == [1.0, 0.0, 0.0, 0.0]
    assert result["layer_missed_share"][2] == [1.0, 0.0, 0.0, 0.0]


def test_script_on_a_dataset(tiny_dataset_3d, tmp_path, capsys):
    bench = load_benchmark("confusion")
    case = "case004"  # the test case: its label is a perfect prediction
    label = nib.load(tiny_dataset_3d / "labelsTs" / f"{case}.nii.gz")
    (tmp_path / "pred").mkdir()
    nib.save(label, tmp_path / "pred" / f"{case}.nii.gz")
    out = tmp_path / "confusion.json"
    assert bench.main([str(tmp_path / "pred"), str(tiny_dataset_3d), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    matrix = np.array(result["matrix"])
    assert (matrix == np.diag(np.diag(matrix))).all() and matrix.trace() > 0
    assert "missed share by layer" in capsys.readouterr().out
