"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from dmsps.cli import main

#: Small (Z, Y, X) shape for importer sources.
SHAPE = (3, 12, 10)

#: A rotated, anisotropic affine, so that any axis mix-up shows in the tests.
AFFINE = np.array(
    [
        [0.0, -1.4, 0.0, 120.0],
        [1.4, 0.0, 0.0, -80.5],
        [0.0, 0.0, 8.0, 33.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def run_cli(capsys, *argv) -> tuple[int, str]:
    """Run ``dmsps ARGV``; return (exit code, stdout + stderr). Never a traceback."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out
    return code, out


#: A plain progress line (dmsps.progress, not a terminal): "desc: 3/5 (60%) [00:03, ...]".
_PROGRESS_LINE = re.compile(r"^.*: \d+(/\d+ \(\d+%\))? \[.*\]$")


def error_line(text: str) -> str:
    """The one line an expected error prints, after any progress lines (work that takes
    over two seconds, as on a busy machine, reports progress before it fails)."""
    lines = [ln.split("\r")[-1].strip() for ln in text.splitlines()]
    rest = [ln for ln in lines if ln and not _PROGRESS_LINE.match(ln)]
    assert len(rest) == 1, text
    return rest[0]


def random_case(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, label 0..3, scribble with 4 = unannotated) of random content."""
    rng = np.random.default_rng(seed)
    image = rng.random(shape, dtype=np.float32)
    label = rng.integers(0, 4, shape).astype(np.uint8)
    scribble = np.full(shape, 4, np.uint16)
    scribble[:, 2:4] = label[:, 2:4]
    return image, label, scribble


def nib_save(path: Path, zyx: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    """Write a (Z, Y, X) array the way external tools do: nibabel order (X, Y, Z)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.transpose(zyx, (2, 1, 0)), affine), str(path))


#: Settings of a 2D model trained in a second or two (shared by the tests that only need
#: some checkpoint to load, export or predict with).
TINY_TRAIN = dict(
    iterations=2,
    batch_size=2,
    patch_size=32,
    val_interval=2,
    features=[4, 8, 16, 32, 64],
    device="cpu",
    threads=1,
)


def train_tiny(dataset: Path, out: Path, **settings) -> Path:
    """Train with TINY_TRAIN (``settings`` override it) into ``out``; the best checkpoint."""
    from dmsps.config import TrainConfig
    from dmsps.data.layout import Dataset
    from dmsps.training.trainer import Trainer

    Trainer(Dataset(dataset), TrainConfig(**{**TINY_TRAIN, **settings}), out, False).fit()
    return out / "checkpoints/best.pt"
