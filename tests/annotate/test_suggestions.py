"""The suggestion rule: per-voxel maps, per-slice scores, the ranking, model lookup."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dmsps.annotate import suggestions as sg
from dmsps.errors import DmspsError


def test_maps_from_probabilities_hand_computed():
    # Two classes, one slice of three voxels: certain and agreeing; uniform; disagreeing.
    main = torch.tensor([[[[1.0, 0.5, 0.9]]], [[[0.0, 0.5, 0.1]]]])  # (K=2, Z=1, Y=1, X=3)
    aux = torch.tensor([[[[1.0, 0.5, 0.1]]], [[[0.0, 0.5, 0.9]]]])
    maps = sg.maps_from_probabilities(main, 0.5 * (main + aux))
    assert maps.labels.tolist() == [[[0, 0, 0]]]
    assert maps.disagreement.tolist() == [[[False, False, True]]]
    # mean probabilities: (1, 0), (0.5, 0.5), (0.5, 0.5): entropies 0, 1, 1
    assert maps.uncertainty.tolist() == [[[0, 255, 255]]]
    assert maps.slice_entropy[0] == pytest.approx(2 / 3)
    assert maps.slice_disagreement[0] == pytest.approx(1 / 3)
    assert maps.scores.slice_scores[0] == pytest.approx(0.5)


def scores(entropy, disagreement):
    return sg.CaseScores(np.asarray(entropy, float), np.asarray(disagreement, float))


def test_rank_orders_by_score_then_case_then_slice_and_skips_scribbled_slices():
    table = {
        "b": scores([0.2, 0.6, 0.4], [0.0, 0.2, 0.0]),  # slice scores 0.1, 0.4, 0.2
        "a": scores([0.8, 0.1, 0.4], [0.0, 0.1, 0.0]),  # 0.4, 0.1, 0.2
    }
    flags = {"b": np.array([False, False, True]), "a": np.array([False, False, False])}
    ranking = sg.rank(table, flags, "slice")
    assert [(s.case, s.slice) for s in ranking] == [
        ("a", 0),  # 0.4 ties with b/1: a first
        ("b", 1),
        ("a", 2),  # 0.2 (b/2 is scribbled)
        ("a", 1),  # 0.1 ties with b/0: a first
        ("b", 0),
    ]
    assert ranking[0].score == pytest.approx(0.4) and ranking[0].entropy == pytest.approx(0.8)
    assert [(s.case, s.slice) for s in sg.rank(table, flags, "slice", top=2)] == [
        ("a", 0),
        ("b", 1),
    ]
    # Deterministic: the same input in another order gives the same list.
    again = sg.rank(dict(reversed(list(table.items()))), flags, "slice")
    assert again == ranking


def test_spread_takes_bands_in_turn_one_slice_per_case_then_again():
    # Two cases of 5 slices; the uncertainty falls from slice 0 to slice 4 in both, so
    # the plain ranking puts both cases' first slices on top.
    falling = np.array([0.9, 0.7, 0.5, 0.3, 0.1])
    scores = {c: sg.CaseScores(falling + off, falling + off) for c, off in (("a", 0.05), ("b", 0))}
    ranking = sg.rank(scores, {}, "slice")
    assert [(s.case, s.slice) for s in ranking[:3]] == [("a", 0), ("b", 0), ("a", 1)]
    picked = sg.spread(ranking, scores, top=4, bands=5)
    # Pass 1: band 0 gives a's slice 0; band 1 has only a and b's slice 1, a is taken:
    # b's; bands 2-4 hold only taken cases. Pass 2: band 0 gives b's slice 0 ...
    assert [(s.case, s.slice) for s in picked] == [("a", 0), ("b", 1), ("b", 0), ("a", 1)]
    assert [(s.case, s.slice) for s in sg.spread(ranking, scores, 10, 1)] == [
        (s.case, s.slice) for s in ranking
    ]  # one band, all cases: the ranking itself
    assert len(sg.spread(ranking, scores, top=50)) == 10  # no more than exist
    with pytest.raises(DmspsError, match="at least 1"):
        sg.spread(ranking, scores, top=0)
    with pytest.raises(DmspsError, match="not cases"):
        sg.spread(sg.rank(scores, {}, "case"), scores, top=1)


def test_rank_cases_only_those_without_scribbles():
    table = {
        "a": scores([0.2, 0.4], [0.0, 0.0]),
        "b": scores([0.9, 0.9], [1, 1]),
        "c": scores([0.6, 0.6], [0, 0]),
    }
    flags = {"b": np.array([False, True])}  # b has a scribble; a and c have none
    ranking = sg.rank(table, flags, "case")
    assert [(s.case, s.slice) for s in ranking] == [("c", None), ("a", None)]
    assert ranking[1].score == pytest.approx(0.15)
    with pytest.raises(DmspsError, match="unknown unit"):
        sg.rank(table, flags, "volume")
    with pytest.raises(DmspsError, match="at least 1"):
        sg.rank(table, flags, "slice", top=0)


def test_resolve_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / "stage1" / "checkpoints").mkdir(parents=True)
    (run / "stage1" / "checkpoints" / "best.pt").write_bytes(b"x")
    assert sg.resolve_checkpoint(run) == run / "stage1" / "checkpoints" / "best.pt"
    (run / "stage2" / "checkpoints").mkdir(parents=True)
    (run / "stage2" / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "stage2" / "checkpoints" / "best.pt").write_bytes(b"x")
    assert sg.resolve_checkpoint(run) == run / "stage2" / "checkpoints" / "best.pt"
    (run / "config.json").write_text(json.dumps({"checkpoint": "last"}))
    assert sg.resolve_checkpoint(str(run)) == run / "stage2" / "checkpoints" / "last.pt"
    with pytest.raises(DmspsError, match="main decoder only"):
        sg.resolve_checkpoint(tmp_path / "model.onnx")
    with pytest.raises(DmspsError, match="no checkpoint in this folder"):
        sg.resolve_checkpoint(tmp_path)
    with pytest.raises(DmspsError, match="no such checkpoint"):
        sg.resolve_checkpoint(tmp_path / "missing" / "best.pt")


def test_model_must_fit_the_dataset(tiny_model, tiny_dataset_3d):
    from dmsps.data.layout import Dataset

    with pytest.raises(DmspsError, match="1 channel"):
        sg.load_predictor(tiny_model, Dataset(tiny_dataset_3d), "cpu")


def test_case_maps_from_a_model(tiny_model, tiny_dataset):
    from dmsps.data.layout import Dataset

    ds = Dataset(tiny_dataset)
    predictor = sg.load_predictor(tiny_model, ds, "cpu")
    image, geom = ds.load_image("case000")
    maps = sg.case_maps(predictor, image, geom.spacing)
    assert maps.labels.shape == maps.uncertainty.shape == geom.shape
    assert maps.labels.max() < 4 and maps.slice_entropy.shape == (geom.shape[0],)
    probs = predictor.probabilities(image, ("mean",), geom.spacing)["mean"]
    expected = -(probs * probs.clamp_min(1e-12).log()).sum(0) / math.log(4)
    assert np.abs(maps.uncertainty / 255 - expected.numpy()).max() <= 0.5 / 255 + 1e-6
    assert maps.slice_entropy == pytest.approx(expected.double().mean((1, 2)).numpy())
