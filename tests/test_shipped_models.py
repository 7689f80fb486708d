"""The models that ship inside the package (src/dmsps/shipped_models/): each card's hash
matches its file, the file loads without pickle code, and the model segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dmsps
from dmsps.zoo import list_models, resolve, sha256, zoo_dir


@pytest.fixture(autouse=True)
def _package_zoo(monkeypatch):
    monkeypatch.delenv("DMSPS_MODEL_DIR", raising=False)


def test_the_acdc_model_ships_with_a_complete_card():
    cards = {c.name: c for c in list_models()}
    assert "acdc" in cards, f"shipped: {sorted(cards)}"
    card = cards["acdc"]
    assert card.preset == "acdc" and "dmsps run" in card.command
    assert 0.8 < card.val_dice <= 1.0
    assert sha256(card.path) == card.sha256
    raw = json.loads((zoo_dir() / "acdc.json").read_text())
    assert set(raw["per_class_dice"]) == {"RV", "Myo", "LV"}


@pytest.mark.parametrize("name", [c.name for c in list_models()] or ["none shipped"])
def test_every_shipped_model_segments_a_volume(name):
    assert name != "none shipped", "no model ships in src/dmsps/shipped_models/"
    resolve(name)  # hash checked
    model = dmsps.load_model(name)
    image = np.random.default_rng(0).normal(size=(2, 64, 48)).astype(np.float32)
    seg = model.predict(image, uncertainty=True)
    assert seg.labels.shape == (2, 64, 48)
    assert seg.labels.max() < len(model.class_names)
    assert float(seg.uncertainty.min()) >= 0.0 and float(seg.uncertainty.max()) <= 1.0
