"""Checkpoint files: tensors plus plain-typed metadata, loaded without running code.

A checkpoint carries everything inference needs (the architecture, classes, channels,
normalisation, how to run the model over a volume), so ``dmsps predict`` works from the
file alone. It is read with ``torch.load(weights_only=True)``: a pickle can name any Python
callable to run while it loads, so a full unpickler would let a downloaded checkpoint run
arbitrary code. Only tensors, dicts, lists, strings and numbers are allowed in the file.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from dmsps.errors import DmspsError
from dmsps.io.atomic import atomic_path
from dmsps.models.networks import build_model
from dmsps.models.unet import ModelConfig


class UnsafeCheckpointError(DmspsError):
    """The file holds Python objects whose loading could run code; it was not loaded."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DmspsError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():
            # A file pickled by plain pickle (protocol 4) makes torch warn before it is
            # refused or loaded below; the outcome is reported in one line either way.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global outside its allow-list before calling it.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it names {found.group(1)}" if found else "it holds Python objects"
        raise UnsafeCheckpointError(
            f"{path}: refused to load: {what}, not just tensors and plain data, and loading "
            "it could run code. Only use checkpoints from sources you trust"
        ) from None
    except Exception as exc:
        # First sentence only: torch's messages go on about internals for lines.
        first = str(exc).splitlines()[0].split(". ")[0][:160] if str(exc) else "no details"
        raise DmspsError(
            f"{path}: not a readable dmsps checkpoint ({type(exc).__name__}: {first}); the "
            "file is truncated or corrupt: copy it again, or use checkpoints/last.pt or "
            "best.pt of a finished run"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise DmspsError(f"{path}: not a dmsps checkpoint (no model/meta entries)")
    return ckpt


def model_config(ckpt: dict[str, Any]) -> ModelConfig:
    return ModelConfig.from_dict(ckpt["meta"]["model"])


def model_from_checkpoint(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> torch.nn.Module:
    model = build_model(model_config(ckpt))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
        first = first.split(": copying")[0]  # the parameter's name, without torch's shapes
        raise DmspsError(
            f"{path}: weights do not fit the architecture it describes ({first[:160]}); the "
            "file was altered or mixed with another model's: use the checkpoint as training "
            "wrote it"
        ) from None
    return model
