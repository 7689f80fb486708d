"""`dmsps run`: the whole pipeline, resumable, geometry kept."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from dmsps.config import apply_overrides
from dmsps.errors import DmspsError
from dmsps.pipeline.runner import run_pipeline
from dmsps.presets import preset


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


def test_bad_settings_fail_before_the_run_folder_records_them(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    for bad, words in (("stage2.val_interval=0", "val_interval"), ("checkpoint=x", "best, last")):
        with pytest.raises(DmspsError, match=words):
            run_pipeline(tiny_dataset, out, apply_overrides(_tiny_cfg(), [bad]), progress=False)
        assert not (out / "config.json").exists()


def test_sparser_scribbles_are_made_in_the_run_folder_and_used(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    before = sorted(p.name for p in (tiny_dataset / "scribblesTr").iterdir())
    cfg = apply_overrides(_tiny_cfg(), ["scribbles.length=0.25", "scribbles.every_nth_slice=2"])
    run_pipeline(tiny_dataset, out, cfg, progress=False, log=lambda *a: None)
    assert sorted(p.name for p in (tiny_dataset / "scribblesTr").iterdir()) == before
    thin_total = full_total = 0
    made = sorted(p.name for p in (out / "scribbles").iterdir())
    assert made and set(made) <= set(before)  # the training split's scribbles
    for name in made:
        full = np.asarray(nib.load(tiny_dataset / "scribblesTr" / name).dataobj)
        thin = np.asarray(nib.load(out / "scribbles" / name).dataobj)
        seeds = np.asarray(nib.load(out / "expand/seeds" / name).dataobj)
        ignore = full.max()
        assert np.all((thin == ignore) | (thin == full))
        # The ignore target merges the scribbles stage 1 saw: the thin ones, not the full.
        assert np.all(seeds[thin != ignore] == thin[thin != ignore])
        thin_total += int((thin != ignore).sum())
        full_total += int((full != ignore).sum())
    assert 0 < thin_total < 0.25 * full_total
    assert json.loads((out / "stage1/config.json").read_text())["scribble_dir"].endswith(
        "scribbles"
    )
    # Both metric conventions are written beside each other.
    medpy = json.loads((out / "metrics/stage2/summary_medpy.json").read_text())
    assert medpy["conventions"]["name"] == "medpy"
    with pytest.raises(DmspsError, match="scribbles: length must be in"):
        bad = apply_overrides(_tiny_cfg(), ["scribbles.length=0"])
        run_pipeline(tiny_dataset, tmp_path / "bad", bad, progress=False)


def test_largest_component_setting_cleans_the_run_predictions(tiny_dataset, tmp_path, monkeypatch):
    """``largest_component=true`` (demo-brain's) post-processes the evaluated predictions.
    A few-iteration model predicts mostly background, so its label maps are replaced by
    one with a stray blob of class 1."""
    import torch
    from scipy import ndimage

    def blobs(probs):
        lab = torch.zeros(probs.shape[1:], dtype=torch.long)
        lab[:, 2:8, 2:8] = 1
        lab[0, 20:22, 20:22] = 1  # stray
        return lab

    monkeypatch.setattr("dmsps.inference.predictor.label_map", blobs)
    components = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        cfg = apply_overrides(_tiny_cfg(), [f"largest_component={flag}"])
        run_pipeline(tiny_dataset, out, cfg, progress=False, log=lambda *a: None)
        pred = np.asarray(nib.load(out / "predictions/stage2/case006.nii.gz").dataobj)
        components[flag] = ndimage.label(pred == 1)[1]
    assert components == {"false": 2, "true": 1}
    assert preset("demo-brain").largest_component and not preset("demo-abdomen").largest_component


def test_a_stopped_stage_ends_the_run_and_a_rerun_continues_it(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    lines: list[str] = []
    stop = apply_overrides(_tiny_cfg(), ["stage1.stop_at=2"])
    result = run_pipeline(tiny_dataset, out, stop, progress=False, log=lines.append)
    assert result["stopped"] == "stage1" and "metrics" not in result
    assert "stage1 stopped at iteration 2" in lines[-1]
    assert not (out / "expand").exists()  # nothing used the half-trained stage 1
    # The rest: without stop_at and on other threads (neither changes what is trained).
    go_on = apply_overrides(_tiny_cfg(), ["stage1.threads=1", "stage2.threads=1"])
    result = run_pipeline(tiny_dataset, out, go_on, progress=False, log=lambda *a: None)
    assert set(result["metrics"]) == {"stage1", "stage2"}
    log = (out / "stage1/log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["2", "4"]  # validation rows


def test_a_run_folder_in_use_by_another_run_is_refused_before_anything_is_written(
    tiny_dataset, tmp_path
):
    from dmsps.io.lock import sole_writer

    out = tmp_path / "run"
    held = sole_writer(out)  # as a `dmsps run` in another terminal would hold it
    with held, pytest.raises(DmspsError, match="another dmsps process"):
        run_pipeline(tiny_dataset, out, _tiny_cfg(), progress=False, log=lambda *a: None)
    assert list(out.iterdir()) == []
