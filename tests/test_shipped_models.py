"""The models that ship inside the package (src/dmsps/shipped_models/): each card's hash
matches its file, the file loads without pickle code, and the model segments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dmsps
from dmsps.zoo import list_models, resolve, sha256, zoo_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "shipped_acdc"


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


def test_the_acdc_model_predicts_as_before_the_settings_and_registry_rework():
    """Labels and uncertainty of the shipped model on a synthetic stack, as the code
    of 32e83dd (before networks, methods and settings moved) computed them."""
    ref = np.load(FIXTURES / "before_refactor.npz")
    model = dmsps.load_model("acdc")
    seg = model.predict(ref["image"], spacing=(10.0, 1.5, 1.5), uncertainty=True)
    assert np.bincount(ref["labels"].ravel()).min() > 500  # every class is in the picture
    np.testing.assert_array_equal(seg.labels, ref["labels"])
    np.testing.assert_allclose(seg.uncertainty, ref["uncertainty"].astype(np.float32), atol=2e-3)
