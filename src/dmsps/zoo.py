"""Trained models that ship with the package, used by name with no download.

Each model is two files in ``dmsps/shipped_models/`` (or in the folder ``DMSPS_MODEL_DIR`` names):
``NAME.pt``, a checkpoint (loaded with ``weights_only``, so it cannot run code), and
``NAME.json``, its model card::

    {"name": "acdc", "file": "acdc.pt", "sha256": "...", "data": "...", "split": "...",
     "preset": "acdc", "command": "...", "val_dice": 0.85, "description": "..."}

The hash is checked every time a model is used, so a damaged or swapped file is refused.
``python benchmarks/ship_model.py RUN_FOLDER NAME`` writes both files from a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmsps.errors import DmspsError

CARD_FIELDS = ("name", "file", "sha256", "data", "split", "preset", "command", "val_dice")


def zoo_dir() -> Path:
    return Path(os.environ.get("DMSPS_MODEL_DIR") or Path(__file__).parent / "shipped_models")


@dataclass
class ModelCard:
    name: str
    file: str
    sha256: str
    data: str
    split: str
    preset: str
    command: str
    val_dice: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return zoo_dir() / self.file


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _card(path: Path) -> ModelCard:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DmspsError(f"{path}: unreadable model card ({exc})") from None
    missing = [k for k in CARD_FIELDS if k not in data]
    if missing:
        raise DmspsError(f"{path}: model card lacks {', '.join(missing)}")
    extra = {k: v for k, v in data.items() if k not in CARD_FIELDS}
    return ModelCard(**{k: data[k] for k in CARD_FIELDS}, extra=extra)


def list_models() -> list[ModelCard]:
    folder = zoo_dir()
    if not folder.is_dir():
        return []
    return [_card(p) for p in sorted(folder.glob("*.json"))]


def resolve(name: str) -> Path:
    """The checked checkpoint file of a shipped model."""
    cards = {c.name: c for c in list_models()}
    if name not in cards:
        known = ", ".join(sorted(cards)) or "none in this installation"
        raise DmspsError(f"no shipped model '{name}' (available: {known}; see `dmsps models`)")
    card = cards[name]
    if not card.path.is_file():
        raise DmspsError(f"{card.path}: the file of model '{name}' is missing")
    actual = sha256(card.path)
    if actual != card.sha256:
        raise DmspsError(
            f"{card.path}: sha256 {actual[:16]}... does not match its card "
            f"({card.sha256[:16]}...); the file is damaged or was replaced, refusing it"
        )
    return card.path
