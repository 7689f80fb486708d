"""benchmarks/grid_ceiling.py: labels through a coarse grid and back."""

from __future__ import annotations

import json
import sys

import numpy as np

from tests.benchmarks import load_benchmark


def test_round_trip_keeps_big_objects_and_loses_thin_ones():
    bench = load_benchmark("grid_ceiling")
    label = np.zeros((8, 16, 16), np.int16)
    label[2:6, 4:12, 4:12] = 1  # 4 x 8 x 8 voxels: survives a 2x coarser grid
    label[:, 14, :] = 2  # one voxel thick: lost at 4x coarser
    same = bench.round_trip(label, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3)
    assert np.array_equal(same, label)
    half = bench.round_trip(label, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), 3)
    assert ((half == 1) & (label == 1)).sum() > 0.5 * (label == 1).sum()
    quarter = bench.round_trip(label, (1.0, 1.0, 1.0), (4.0, 4.0, 4.0), 3)
    assert not (quarter == 2).any()


def test_script_reports_each_spacing(tiny_dataset_3d, tmp_path, monkeypatch, capsys):
    bench = load_benchmark("grid_ceiling")
    out = tmp_path / "ceiling.json"
    argv = ["grid_ceiling.py", str(tiny_dataset_3d), "--spacing", "1", "1", "1"]
    argv += ["--spacing", "3", "3", "3", "--split", "val", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["spacing_mm"] for r in rows] == [[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]]
    assert rows[0]["mean_dice"] <= 1.0 and rows[1]["mean_dice"] < rows[0]["mean_dice"]
    assert "mm: mean Dice" in capsys.readouterr().out
