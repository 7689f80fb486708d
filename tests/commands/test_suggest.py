"""`dmsps suggest`: the ranking on the command line, the same as the page's."""

from __future__ import annotations

import json

from dmsps.annotate.workspace import Workspace
from tests.annotate.conftest import erase_slices, tiny_model  # noqa: F401 (a fixture)
from tests.support import run_cli


def test_ranks_unscribbled_slices_like_the_page(tiny_dataset, tiny_model, tmp_path, capsys):  # noqa: F811
    erase_slices(tiny_dataset, "case002", [0, 2])
    erase_slices(tiny_dataset, "case003", [0, 1, 2])
    out = tmp_path / "next.json"
    code, text = run_cli(
        capsys, "suggest", tiny_dataset, "--model", tiny_model, "--top", "4",
        "--device", "cpu", "--json", out, "--quiet",
    )  # fmt: skip
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "case", "slice", "score", "entropy", "disagreement"]
    ranked = json.loads(out.read_text())["suggestions"]
    assert len(ranked) == 4 and len(lines) == 5
    # Only the five slices without scribbles are candidates (the top four listed).
    candidates = {("case002", 0), ("case002", 2), ("case003", 0), ("case003", 1), ("case003", 2)}
    assert {(s["case"], s["slice"]) for s in ranked} <= candidates
    scores = [s["score"] for s in ranked]
    assert scores == sorted(scores, reverse=True)
    ws = Workspace(tiny_dataset, model=tiny_model, device="cpu")
    page = [s.to_json() for s in ws.suggest("slice", 4)]
    assert [(s["case"], s["slice"]) for s in page] == [(s["case"], s["slice"]) for s in ranked]
    # --spread: the same candidates, one slice per case until each case has given one.
    code, text = run_cli(
        capsys, "suggest", tiny_dataset, "--model", tiny_model, "--top", "2", "--spread",
        "--device", "cpu", "--json", out, "--quiet",
    )  # fmt: skip
    assert code == 0, text
    spread = json.loads(out.read_text())
    assert spread["spread"] is True
    assert sorted(s["case"] for s in spread["suggestions"]) == ["case002", "case003"]
    code, text = run_cli(
        capsys, "suggest", tiny_dataset, "--model", tiny_model, "--unit", "case", "--quiet"
    )
    assert code == 0
    assert [ln.split()[1:3] for ln in text.splitlines()[1:]] == [["case003", "-"]]


def test_refusals_are_one_line(tiny_dataset, tiny_model, tmp_path, capsys):  # noqa: F811
    for argv, message in (
        (["--top", "0"], "--top must be at least 1"),
        (["--spread", "--unit", "case"], "--spread orders slices"),
        (["--split", "nope"], "unknown split"),
        (["--split", "test", "--unit", "case"], None),  # test cases: no scribbles at all
    ):
        code, text = run_cli(
            capsys, "suggest", tiny_dataset, "--model", tiny_model, "--quiet", *argv
        )
        if message is None:
            assert code == 0 and "case006" in text
        else:
            assert code == 2 and message in text and len(text.strip().splitlines()) == 1
    code, text = run_cli(capsys, "suggest", tiny_dataset, "--model", tmp_path / "m.onnx")
    assert code == 2 and "both decoders" in text
