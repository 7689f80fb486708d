"""`dmsps predict`: plain folders, geometry, bad inputs."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from dmsps.cli import main
from tests.support import train_tiny


def test_predict_cli_on_plain_folder_and_errors(tiny_dataset, tmp_path, capsys, monkeypatch):
    ckpt = str(train_tiny(tiny_dataset, tmp_path / "r"))
    src = tiny_dataset / "imagesTs"
    assert (
        main(["predict", ckpt, str(src), str(tmp_path / "pred"), "--uncertainty", "--quiet"]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.nii.gz")) == [
        "case006.nii.gz",
        "case007.nii.gz",
    ]
    assert (tmp_path / "pred/uncertainty/case006.nii.gz").is_file()

    # --largest-component cuts each class to its largest component. A 2-iteration model
    # predicts all background, so the label map is replaced by one with a stray blob.
    def blobs(probs):
        lab = torch.zeros(probs.shape[1:], dtype=torch.long)
        lab[:, 2:8, 2:8] = 1
        lab[0, 20:22, 20:22] = 1  # stray
        lab[1, 10:14, 20:24] = 3
        return lab

    monkeypatch.setattr("dmsps.inference.predictor.labels", blobs)
    for flag, folder in (([], "p_raw"), (["--largest-component"], "p_lcc")):
        assert main(["predict", ckpt, str(src), str(tmp_path / folder), *flag, "--quiet"]) == 0
    raw = np.asarray(nib.load(tmp_path / "p_raw/case006.nii.gz").dataobj)
    lcc = np.asarray(nib.load(tmp_path / "p_lcc/case006.nii.gz").dataobj)
    assert ndimage.label(raw == 1)[1] == 2 and ndimage.label(lcc == 1)[1] == 1
    assert (lcc == 1).sum() == (raw == 1).sum() - 4 and (lcc == 3).sum() == (raw == 3).sum()
    monkeypatch.undo()
    # never into the input folder
    assert main(["predict", ckpt, str(src), str(src / "out"), "--quiet"]) == 2
    assert "refusing to write into the input folder" in capsys.readouterr().err
    # NaN input is named
    bad = tmp_path / "bad"
    bad.mkdir()
    img = nib.load(src / "case006_0000.nii.gz")
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), bad / "nan_0000.nii.gz")
    assert main(["predict", ckpt, str(bad), str(tmp_path / "p2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nan_0000.nii.gz" in err and "NaN" in err
    # not a checkpoint
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["predict", str(junk), str(src), str(tmp_path / "p3"), "--quiet"]) == 2
    assert "junk.pt" in capsys.readouterr().err
