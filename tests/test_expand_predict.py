"""Scribble expansion, prediction geometry, and the resumable pipeline."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from dmsps.cli import main
from dmsps.config import apply_overrides, preset
from dmsps.errors import DmspsError
from dmsps.inference.postprocess import largest_component_per_class
from dmsps.inference.uncertainty import normalised_entropy
from dmsps.pipeline.expand import expand_case
from dmsps.pipeline.run import run_pipeline

IGN = 4


def test_normalised_entropy_bounds():
    uniform = torch.full((4, 2, 2), 0.25)
    onehot = torch.zeros(4, 2, 2)
    onehot[1] = 1
    assert torch.allclose(normalised_entropy(uniform), torch.ones(2, 2))
    assert torch.allclose(normalised_entropy(onehot), torch.zeros(2, 2), atol=1e-6)
    p = torch.tensor([0.5, 0.5, 0.0, 0.0]).view(4, 1, 1)
    assert normalised_entropy(p).item() == pytest.approx(math.log(2) / math.log(4))


def test_expansion_keeps_confident_largest_components_and_scribbles():
    # one slice 1x6x6; class 1 confident in two blobs (sizes 4 and 1); rest uncertain
    probs = torch.full((4, 1, 6, 6), 0.25)
    conf = torch.tensor([0.0, 1.0, 0.0, 0.0]).view(4, 1)
    for y, x in [(0, 0), (0, 1), (1, 0), (1, 1), (4, 4)]:
        probs[:, 0, y, x] = conf[:, 0]
    scribble = np.full((1, 6, 6), IGN, np.int16)
    scribble[0, 5, 0] = 3  # an uncertain pixel that is scribbled stays annotated
    scribble[0, 4, 4] = 2  # the scribble wins over the model where both exist
    seeds = expand_case(probs, scribble, threshold=0.1, ignore=IGN, keep_largest=True)
    assert (seeds[0, :2, :2] == 1).all()  # the large confident blob
    assert seeds[0, 4, 4] == 2  # small blob removed, scribble kept
    assert seeds[0, 5, 0] == 3
    assert (seeds == IGN).sum() == 36 - 4 - 2


def test_largest_component_is_per_slice_and_class():
    seeds = np.full((2, 5, 5), IGN, np.int16)
    seeds[0, 0, 0] = 1
    seeds[0, 2:4, 2:4] = 1
    seeds[1, 0, 0] = 1  # alone in its slice: kept
    out = largest_component_per_class(seeds, 4, IGN, per_slice=True)
    assert out[0, 0, 0] == IGN and (out[0, 2:4, 2:4] == 1).all() and out[1, 0, 0] == 1


def test_largest_component_3d_joins_slices_and_fills_background():
    pred = np.zeros((3, 6, 6), np.uint8)
    pred[0, 1, 1] = pred[1, 1, 1] = pred[2, 1, 1] = 2  # 3 voxels through the slices
    pred[1, 4:6, 4:6] = 2  # 4 voxels in one slice: the largest class-2 component
    pred[2, 5, 0] = 1  # the only class-1 voxel: kept
    out = largest_component_per_class(pred, 4, fill=0)
    assert (out[1, 4:6, 4:6] == 2).all() and (out[:, 1, 1] == 0).all()
    assert out[2, 5, 0] == 1 and out.sum() == 4 * 2 + 1
    pred[1, 2, 1] = pred[1, 3, 1] = 2  # now the column joins 5 voxels: it wins
    out = largest_component_per_class(pred, 4, fill=0)
    assert (out[:, 1, 1] == 2).all() and (out[1, 4:6, 4:6] == 0).all()


def _tiny_cfg(tmp_iters: int = 4):
    return apply_overrides(
        preset("demo"),
        [
            f"stage1.iterations={tmp_iters}",
            "stage1.val_interval=2",
            "stage1.patch_size=32",
            "stage1.batch_size=4",
            "stage1.features=4,8,16,32,64",
            "stage1.device=cpu",
            "stage2.iterations=2",
            "stage2.val_interval=1",
            "stage2.patch_size=32",
            "stage2.batch_size=4",
            "stage2.features=4,8,16,32,64",
            "stage2.device=cpu",
        ],
    )


def test_pipeline_end_to_end_resumes_and_keeps_geometry(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    result = run_pipeline(tiny_dataset, out, _tiny_cfg(), progress=False, log=lambda *a: None)
    assert result["split"] == "test"
    for stage in ("stage1", "stage2"):
        summ = json.loads((out / "metrics" / stage / "summary.json").read_text())
        assert summ["cases"] == 2 and 0.0 <= summ["foreground_mean"]["dice"]["mean"] <= 1.0
    pred = nib.load(out / "predictions/stage2/case006.nii.gz")
    src = nib.load(tiny_dataset / "imagesTs/case006_0000.nii.gz")
    assert np.allclose(pred.affine, src.affine) and pred.shape == src.shape
    unc = np.asarray(nib.load(out / "predictions/stage2/uncertainty/case006.nii.gz").dataobj)
    assert unc.min() >= 0 and unc.max() <= 1
    # Seed coverage in the summary matches a count over the files on disk.
    exp = json.loads((out / "expand/seeds/expand_summary.json").read_text())
    truth = right = 0
    for case in sorted(p.name for p in (out / "expand/seeds").glob("*.nii.gz")):
        label = np.asarray(nib.load(tiny_dataset / f"labelsTr/{case}").dataobj)
        seeds = np.asarray(nib.load(out / f"expand/seeds/{case}").dataobj)
        truth += int((label == 1).sum())
        right += int(((label == 1) & (seeds == 1)).sum())
    assert exp["classes"][list(exp["classes"])[1]]["coverage"] == pytest.approx(right / truth)
    assert (out / "report/index.html").is_file()
    # Stage 2 started from stage-1 weights and trained on the expanded seeds.
    s2 = json.loads((out / "stage2/config.json").read_text())
    assert s2["init_from"].endswith("stage1/checkpoints/best.pt")
    assert s2["scribble_dir"].endswith("expand/seeds")
    # Rerun: every step is complete, nothing is retrained.
    mtime = (out / "stage1/checkpoints/best.pt").stat().st_mtime_ns
    run_pipeline(tiny_dataset, out, _tiny_cfg(), progress=False, log=lambda *a: None)
    assert (out / "stage1/checkpoints/best.pt").stat().st_mtime_ns == mtime
    # Other settings in the same folder are refused rather than mixed.
    with pytest.raises(DmspsError, match="different settings"):
        run_pipeline(tiny_dataset, out, _tiny_cfg(6), progress=False, log=lambda *a: None)
    # A folder made before a setting existed resumes (the setting takes its default).
    saved = json.loads((out / "config.json").read_text())
    del saved["stage1"]["schedule"], saved["stage2"]["schedule"]
    (out / "config.json").write_text(json.dumps(saved))
    run_pipeline(tiny_dataset, out, _tiny_cfg(), progress=False, log=lambda *a: None)
    assert (out / "stage1/checkpoints/best.pt").stat().st_mtime_ns == mtime


def test_predict_cli_on_plain_folder_and_errors(tiny_dataset, tmp_path, capsys, monkeypatch):
    from dmsps.config import TrainConfig
    from dmsps.data.layout import Dataset
    from dmsps.train.trainer import Trainer

    cfg = TrainConfig(
        iterations=2,
        batch_size=2,
        patch_size=32,
        val_interval=2,
        features=[4, 8, 16, 32, 64],
        device="cpu",
    )
    Trainer(Dataset(tiny_dataset), cfg, tmp_path / "r", False).fit()
    ckpt = str(tmp_path / "r/checkpoints/best.pt")
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

    monkeypatch.setattr("dmsps.inference.predict.labels", blobs)
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


class _PerPixel(torch.nn.Module):
    """A 1x1-conv dual-branch stand-in: exactly flip-equivariant, position-dependent output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main, self.aux = torch.nn.Conv2d(1, 4, 1), torch.nn.Conv2d(1, 4, 1)

    def forward(self, x, aux: bool = True):
        return (self.main(x), self.aux(x)) if aux else self.main(x)


class _Predictor:
    """The part of inference.predict.Predictor that expansion uses, around _PerPixel."""

    def __init__(self) -> None:
        from dmsps.inference.inferers import ResizedSliceInferer

        self.inferer = ResizedSliceInferer((16, 16), channels_last=False)
        self.model = _PerPixel()

    def probabilities(self, image, outputs):
        return self.inferer(self.model, image, outputs)


def test_flip_tta_maps_predictions_back_to_the_image_grid():
    from dmsps.pipeline.expand import tta_probs

    image = np.random.default_rng(0).random((1, 3, 10, 12)).astype(np.float32)
    predictor = _Predictor()
    plain = tta_probs(predictor, image, flips=False)
    tta = tta_probs(predictor, image, flips=True)
    # An equivariant model gains nothing from flips; a wrongly flipped-back
    # prediction (e.g. along Z) would not line up with the image.
    assert torch.allclose(tta, plain, atol=1e-5)
