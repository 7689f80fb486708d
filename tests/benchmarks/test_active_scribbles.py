"""benchmarks/active_scribbles.py: which slices each order reveals, the dataset views,
and the whole experiment end to end on tiny data (resumable)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from dmsps.annotate.suggestions import CaseScores
from dmsps.data.layout import Dataset
from tests.benchmarks import load_benchmark

#: Two-iteration stages of a tiny network.
TINY = [
    f"{stage}.{key}"
    for stage in ("stage1", "stage2")
    for key in ("iterations=2", "batch_size=2", "patch_size=32", "val_interval=2",
                "features=4,8,16,32,64", "threads=1")
]  # fmt: skip


def test_reveal_orders():
    bench = load_benchmark("active_scribbles")
    pool = [(c, z) for c in ("a", "b") for z in range(5)]
    assert bench.batch_size(pool, 0.1) == 1 and bench.batch_size(pool, 0.25) == 2
    first = bench.reveal_random(pool, [], 3, seed=0, round_=0)
    assert first == bench.reveal_random(pool, [], 3, seed=0, round_=0)  # deterministic
    assert first != bench.reveal_random(pool, [], 3, seed=1, round_=0)
    more = bench.reveal_random(pool, first, 3, seed=0, round_=1)
    assert len(more) == 3 and not set(more) & set(first)
    scores = {
        "a": CaseScores(np.array([0.1, 0.9, 0.8, 0.2, 0.0]), np.zeros(5)),
        "b": CaseScores(np.array([0.7, 0.95, 0.1, 0.1, 0.1]), np.zeros(5)),
    }
    chosen, head = bench.reveal_suggested(pool, [("b", 1)], 3, scores)
    assert chosen == [("a", 1), ("a", 2), ("b", 0)]  # b/1 scores highest but is revealed
    assert [h["score"] for h in head] == [0.45, 0.4, 0.35]
    # Slices outside the pool (no real scribble) are never suggested.
    chosen, _ = bench.reveal_suggested([("a", 0), ("a", 3)], [], 2, scores)
    assert chosen == [("a", 0), ("a", 3)]


def test_view_holds_only_the_revealed_slices(tiny_dataset, tmp_path):
    bench = load_benchmark("active_scribbles")
    ds = Dataset(tiny_dataset)
    pool = bench.slice_pool(ds)
    assert len(pool) == 4 * 3  # four training cases of three scribbled slices
    bench.write_view(ds, [("case001", 2), ("case003", 0)], tmp_path / "r")
    view = Dataset(tmp_path / "r" / "data")
    assert view.split("train") == ds.split("train") and view.split("test") == []
    for case in ds.split("train"):
        scribble = view.load_scribble(case)
        keep = {("case001", 2): 2, ("case003", 0): 0}
        for z in range(3):
            original = ds.load_scribble(case)[z]
            if keep.get((case, z)) == z:
                np.testing.assert_array_equal(scribble[z], original)
            else:
                assert (scribble[z] == 4).all()
    img, label = view.load_image("case000")[0], view.load_label("case000")
    assert img.shape == (1, 3, 32, 32) and label is not None
    assert json.loads((tmp_path / "r" / "revealed.json").read_text()) == [
        ["case001", 2],
        ["case003", 0],
    ]


def start_of(out):
    return json.loads((out / "seed0" / "round0" / "revealed.json").read_text())


def test_end_to_end_and_resume(tiny_dataset, tmp_path, capsys):
    bench = load_benchmark("active_scribbles")
    out = tmp_path / "active"
    argv = [
        str(tiny_dataset), "--out", str(out), "--preset", "demo", "--seeds", "0",
        "--rounds", "1", "--fraction", "0.25", "--device", "cpu", "--quiet",
        *[a for s in TINY for a in ("--set", s)],
    ]  # fmt: skip
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    assert "| round | slices with scribbles |" in text
    summary = json.loads((out / "summary.json").read_text())
    for strategy in ("suggest", "random", "spread"):
        rows = summary["rounds"][strategy]
        assert [r["revealed"] for r in rows] == [3, 6]
        assert all(0 <= r["dice"]["stage2"]["mean"] <= 1 for r in rows)
    round1 = {
        s: json.loads((out / "seed0" / s / "round1" / "revealed.json").read_text())
        for s in ("suggest", "random", "spread")
    }
    spread = {tuple(s) for s in round1["spread"]} - {tuple(s) for s in start_of(out)}
    assert len({case for case, _ in spread}) == len(spread)  # one slice per case
    start = json.loads((out / "seed0" / "round0" / "revealed.json").read_text())
    for chosen in round1.values():
        assert all(s in chosen for s in start)  # round 1 keeps round 0's slices
    for strategy, chosen in round1.items():  # where in the (3-slice) stacks they lie
        added = {tuple(s) for s in chosen} - {tuple(s) for s in start}
        rel = [z / 2 for _, z in added]
        where = summary["positions"][strategy]
        assert where["slices"] == 3 and where["median"] == pytest.approx(float(np.median(rel)))
        assert where["first_fifth"] == pytest.approx(np.mean([r <= 0.2 for r in rel]))
    assert "Where the added slices lie in their stack" in text
    ranking = json.loads((out / "seed0" / "suggest" / "round1" / "ranking.json").read_text())
    assert len(ranking["chosen"]) == 3
    assert not {tuple(s) for s in ranking["chosen"]} & {tuple(s) for s in start}
    # The view's scribbles are DATA's on the revealed slices, unannotated elsewhere.
    view = out / "seed0" / "suggest" / "round1" / "data" / "scribblesTr"
    case, z = ranking["chosen"][0]
    arr = np.transpose(np.asanyarray(nib.load(str(view / f"{case}.nii.gz")).dataobj), (2, 1, 0))
    assert (arr[z] != 4).any()
    # A second run resumes: nothing is trained again, the same table comes back.
    stamp = (out / "seed0" / "round0" / "run" / "results.json").stat().st_mtime_ns
    assert bench.main(argv) == 0
    assert capsys.readouterr().out == text  # (--quiet: the runs print nothing)
    assert (out / "seed0" / "round0" / "run" / "results.json").stat().st_mtime_ns == stamp


def test_refuses_too_many_rounds(tiny_dataset, tmp_path, capsys):
    bench = load_benchmark("active_scribbles")
    argv = [str(tiny_dataset), "--out", str(tmp_path / "x"), "--fraction", "0.5", "--rounds", "2"]
    assert bench.main(argv) == 2
    assert "lower --fraction or --rounds" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
