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

    monkeypatch.setattr("dmsps.inference.predictor.label_map", blobs)
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


def test_inputs_named_by_channel_in_one_folder_per_case(tmp_path):
    """BraTS releases name the sequences (``CASE_t1ce``), one folder per case, with the
    seg file beside them: matched to the model's channel names, seg skipped."""
    import pytest

    from dmsps.errors import DataError, DmspsError
    from dmsps.inference.predictor import find_inputs

    names = ["t1", "t1ce", "t2", "flair"]
    root = tmp_path / "MICCAI_BraTS2020_ValidationData"
    for case in ("BraTS20_Validation_002", "BraTS20_Validation_001"):
        for kind in ("flair", "seg", "t1ce", "t2", "t1"):  # not in channel order
            (root / case).mkdir(parents=True, exist_ok=True)
            (root / case / f"{case}_{kind}.nii.gz").touch()
    (root / "BraTS20_Validation_002" / "W39_1998.09.19_Segm.nii").touch()  # as case 355's
    cases = find_inputs(root, 4, channel_names=names)
    assert [c.case for c in cases] == ["BraTS20_Validation_001", "BraTS20_Validation_002"]
    for c in cases:
        assert [p.name for p in c.channels] == [f"{c.case}_{n}.nii.gz" for n in names]
    # one case folder alone, and upper-case names
    one = root / "BraTS20_Validation_001"
    (one / "BraTS20_Validation_001_t1ce.nii.gz").rename(one / "BraTS20_Validation_001_T1CE.nii.gz")
    (case,) = find_inputs(one, 4, channel_names=names)
    assert case.channels[1].name == "BraTS20_Validation_001_T1CE.nii.gz"
    # a missing sequence names the case and the expected suffixes
    (one / "BraTS20_Validation_001_flair.nii.gz").unlink()
    with pytest.raises(DataError, match=r"has channels \[0, 1, 2\], the model takes 4 .*_flair"):
        find_inputs(one, 4, channel_names=names)
    # two files for one channel: refused, not one of them dropped
    (one / "BraTS20_Validation_001_flair.nii.gz").touch()
    (one / "BraTS20_Validation_001_0000.nii.gz").touch()
    with pytest.raises(DataError, match=r"ambiguous: .*_0000\.nii\.gz is also channel 0"):
        find_inputs(one, 4, channel_names=names)
    # folders that are not one case each (a release's imagesTs/, labelsTs/) are not mixed
    word = tmp_path / "WORD-V0.1.0"
    for part in ("imagesTs", "labelsTs"):
        (word / part).mkdir(parents=True)
        (word / part / "word_0001.nii.gz").touch()
    with pytest.raises(DmspsError, match="its folders imagesTs, labelsTs hold some; pass"):
        find_inputs(word, 1)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DmspsError, match=r"no NIfTI files \(.nii/.nii.gz\) found"):
        find_inputs(tmp_path / "empty", 1)
    # a one-channel model keeps reading every file as its own case
    (single,) = find_inputs(one / "BraTS20_Validation_001_t2.nii.gz", 1, channel_names=["CT"])
    assert single.case == "BraTS20_Validation_001_t2"


def test_predict_cli_matches_channels_by_name(tiny_dataset_3d, tmp_path, capsys):
    """The checkpoint's channel names (here MRI, MRI1) pick a case's files."""
    ckpt = str(train_tiny(tiny_dataset_3d, tmp_path / "r"))
    src = tmp_path / "src" / "case004"
    src.mkdir(parents=True)
    for index, name in enumerate(("MRI", "MRI1")):
        img = nib.load(tiny_dataset_3d / "imagesTs" / f"case004_{index:04d}.nii.gz")
        nib.save(img, src / f"case004_{name}.nii.gz")
    assert main(["predict", ckpt, str(src.parent), str(tmp_path / "pred"), "--quiet"]) == 0
    pred = nib.load(tmp_path / "pred" / "case004.nii.gz")
    assert pred.shape == img.shape and np.allclose(pred.affine, img.affine)
