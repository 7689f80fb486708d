"""Checkpoints load without running code, old ones still work, broken ones fail clearly."""

from __future__ import annotations

import contextlib
import pickle
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from dmsps.errors import DmspsError
from dmsps.models.checkpoint import (
    UnsafeCheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)
from tests.support import run_cli

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_v0_1"


def test_release_0_1_checkpoint_gives_identical_predictions(tmp_path, capsys):
    """tests/fixtures/legacy_v0_1 was written by release 0.1 (before inference became a
    component): its model, and the label and uncertainty maps that release predicted for
    ``images/probe.nii.gz`` (40 x 40 slices against a 32 x 32 training size)."""
    code, out = run_cli(
        capsys,
        "predict",
        LEGACY / "model_v0.1.0.pt",
        LEGACY / "images",
        tmp_path / "pred",
        "--uncertainty",
        "--device",
        "cpu",
        "--quiet",
    )
    assert code == 0, out
    for rel in ("probe.nii.gz", "uncertainty/probe.nii.gz"):
        got = np.asarray(nib.load(tmp_path / "pred" / rel).dataobj)
        want = np.asarray(nib.load(LEGACY / "expected" / rel).dataobj)
        if rel.startswith("uncertainty"):
            np.testing.assert_allclose(got, want, atol=1e-6)
        else:
            assert np.array_equal(got, want)


class _RunsCode:
    """Unpickling this calls ``Path.touch`` on a marker file: what an attacker would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_whose_pickle_runs_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    legit = load_checkpoint(LEGACY / "model_v0.1.0.pt")
    legit["meta"]["payload"] = _RunsCode(marker)
    evil = tmp_path / "evil.pt"
    torch.save(legit, evil)
    # The file really is dangerous: a full unpickler runs the code.
    with open(evil, "rb") as fh, contextlib.suppress(Exception):
        torch.load(fh, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(UnsafeCheckpointError, match="could run code"):
        load_checkpoint(evil)
    code, out = run_cli(capsys, "predict", evil, LEGACY / "images", tmp_path / "p", "--quiet")
    assert code == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and str(evil) in lines[0] and "refused" in lines[0]
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_fail_with_one_line(tmp_path, capsys):
    whole = (LEGACY / "model_v0.1.0.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DmspsError, match="not a readable dmsps checkpoint"):
        load_checkpoint(cut)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(DmspsError, match="not a dmsps checkpoint"):
        load_checkpoint(plain)
    pickled = tmp_path / "list.pt"
    pickled.write_bytes(pickle.dumps([1, 2, 3]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DmspsError, match=r"list\.pt"):
            load_checkpoint(pickled)
    assert not caught, "the one-line error is all the user should see"
    code, out = run_cli(capsys, "predict", cut, LEGACY / "images", tmp_path / "p", "--quiet")
    assert code == 2 and "cut.pt" in out


def test_weights_that_do_not_fit_their_architecture(tmp_path):
    ckpt = load_checkpoint(LEGACY / "model_v0.1.0.pt")
    ckpt["meta"]["model"]["features"] = [8, 16, 32]
    with pytest.raises(DmspsError, match="do not fit"):
        model_from_checkpoint(ckpt, "x.pt")
    ckpt["meta"]["model"]["colour"] = "blue"
    with pytest.raises(DmspsError, match="unknown model setting"):
        model_from_checkpoint(ckpt, "x.pt")


def test_legacy_metadata_is_read_as_today_s(tmp_path):
    from dmsps.data.normalization import from_checkpoint
    from dmsps.inference.inferers import inference_settings
    from dmsps.models.checkpoint import model_config

    ckpt = load_checkpoint(LEGACY / "model_v0.1.0.pt")
    meta = ckpt["meta"]
    assert "inference" not in meta and meta["normalisation"] == "zscore"  # release 0.1
    assert inference_settings(meta) == {"kind": "resized-slices", "size": [32, 32]}
    assert [str(s) for s in from_checkpoint(meta, 1)] == ["zscore"]
    assert model_config(ckpt).spatial_dims == 2
    shutil.copy(LEGACY / "model_v0.1.0.pt", tmp_path / "copy.pt")
    assert model_from_checkpoint(load_checkpoint(tmp_path / "copy.pt")) is not None
