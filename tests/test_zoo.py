"""Shipped models: listed, used by name, hash-checked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import dmsps
from dmsps.errors import DmspsError
from dmsps.zoo import list_models, resolve, sha256
from tests.support import run_cli, train_tiny


@pytest.fixture
def zoo(tiny_dataset, tmp_path, monkeypatch):
    ckpt = train_tiny(tiny_dataset, tmp_path / "run")
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copy(ckpt, folder / "tiny.pt")
    card = {
        "name": "tiny",
        "file": "tiny.pt",
        "sha256": sha256(folder / "tiny.pt"),
        "data": "tiny synthetic",
        "split": "val",
        "preset": "demo",
        "command": "dmsps train ...",
        "val_dice": 0.5,
    }
    (folder / "tiny.json").write_text(json.dumps(card))
    monkeypatch.setenv("DMSPS_MODEL_DIR", str(folder))
    return folder


def test_a_shipped_model_is_listed_and_used_by_name(zoo, tiny_dataset, tmp_path, capsys):
    assert [c.name for c in list_models()] == ["tiny"]
    code, out = run_cli(capsys, "models")
    assert code == 0 and "tiny" in out and "validation Dice 0.500" in out
    code, out = run_cli(capsys, "predict", "--model", "tiny", tiny_dataset, tmp_path / "p")
    assert code == 0 and len(list((tmp_path / "p").glob("*.nii.gz"))) == 2
    image = np.random.default_rng(0).random((3, 32, 32))
    assert dmsps.load_model("tiny").predict(image).labels.shape == (3, 32, 32)


def test_a_damaged_or_unknown_model_is_refused(zoo, tiny_dataset, tmp_path, capsys):
    with (zoo / "tiny.pt").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(DmspsError, match="does not match its card"):
        resolve("tiny")
    code, out = run_cli(capsys, "predict", "--model", "tiny", tiny_dataset, tmp_path / "p")
    assert code == 2 and "damaged" in out and not (tmp_path / "p").exists()
    code, out = run_cli(capsys, "predict", "--model", "nope", tiny_dataset, tmp_path / "p")
    assert code == 2 and "available: tiny" in out
    code, out = run_cli(capsys, "predict", "--model", "tiny", tiny_dataset)
    assert code == 2 and "--model NAME IN OUT" in out


def test_an_empty_zoo_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DMSPS_MODEL_DIR", str(tmp_path / "none"))
    code, out = run_cli(capsys, "models")
    assert code == 0 and "no trained models ship" in out
