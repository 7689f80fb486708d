"""Checkpoints carry everything inference needs (model config, classes, input size,
normalisation) so ``dmsps predict`` works from the file alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dmsps.errors import DmspsError
from dmsps.io.atomic import atomic_path
from dmsps.models.unet import DualDecoderNet, ModelConfig


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DmspsError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DmspsError(f"{path}: not a readable dmsps checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise DmspsError(f"{path}: not a dmsps checkpoint (no model/meta entries)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> DualDecoderNet:
    model = DualDecoderNet(ModelConfig(**ckpt["meta"]["model"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model
