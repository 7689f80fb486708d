"""Reuse checks of compare's run folders (the end-to-end command is in tests/commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmsps.config import apply_overrides
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.pipeline.compare import (
    check_before_training,
    plan_runs,
    stage1_record,
    table_markdown,
)
from dmsps.presets import PRESETS


def _one_run(out: Path, *overrides: str):
    base = apply_overrides(PRESETS["demo"].build(), list(overrides))
    return plan_runs(base, ["pce"], 1, out, stage2=False)


def test_a_setting_added_since_a_run_was_made_takes_its_default(tiny_dataset, tmp_path):
    """A compare.json written before a TrainConfig field existed must not block the
    resume of a long comparison: the missing field counts as its default."""
    runs = _one_run(tmp_path / "cmp")
    record = stage1_record(runs[0], "val")
    del record["stage1"]["encoder_dropout"]  # as a release without the field wrote it
    del record["scribbles"]["every_nth_slice"]  # the same for the scribble settings
    runs[0].folder.mkdir(parents=True)
    (runs[0].folder / "compare.json").write_text(json.dumps(record))
    check_before_training(Dataset(tiny_dataset), runs, "val")
    # ... and a finished run of that release is skipped, not trained again over its files
    summary = runs[0].summary_path("stage1")
    summary.parent.mkdir(parents=True)
    summary.write_text("{}")
    assert runs[0].is_finished(stage1_record(runs[0], "val"))

    # A real difference, here a setting that is not at its default, is still refused.
    changed = _one_run(tmp_path / "cmp", "stage1.encoder_dropout=0,0,0,0,0")
    with pytest.raises(DmspsError, match="encoder_dropout"):
        check_before_training(Dataset(tiny_dataset), changed, "val")


def test_the_loss_form_matters_only_to_dmsps_runs(tiny_dataset, tmp_path):
    """Runs made before the default loss form changed: a pce run is still the same run,
    a dmsps run is not."""
    for method, reused in (("pce", True), ("dmsps", False)):
        base = apply_overrides(PRESETS["demo"].build(), ["stage1.pl_loss=soft-ce"])
        old = plan_runs(base, [method], 1, tmp_path / method, stage2=False)[0]
        old.folder.mkdir(parents=True)
        (old.folder / "compare.json").write_text(json.dumps(stage1_record(old, "val")))
        new = plan_runs(PRESETS["demo"].build(), [method], 1, tmp_path / method, stage2=False)
        assert new[0].cfg.stage1.pl_loss == "authors"
        if reused:
            check_before_training(Dataset(tiny_dataset), new, "val")
        else:
            with pytest.raises(DmspsError, match="pl_loss: soft-ce -> authors"):
                check_before_training(Dataset(tiny_dataset), new, "val")


def test_markdown_table_bolds_only_the_best_mean_dice():
    def row(method, dice):
        return {
            "method": method,
            "stage": "stage1",
            "seeds": [0],
            "dice": {"mean": dice, "std": None},
            "classes": [{"name": "LV", "dice": {"mean": dice, "std": None}}],
            "hd95": {"mean": 5.0, "std": None, "n": 1},
            "train_minutes": {"mean": 2.0},
        }

    rows = [row("pce", 0.4), row("dmsps", 0.8), row("full", 0.8), row("broken", None)]
    lines = table_markdown(rows, ["LV"]).splitlines()[2:]
    assert lines[0].startswith("| pce | 1 | 1 | 0.400 | 0.400 |")
    assert lines[1].startswith("| dmsps | 1 | 1 | **0.800** | 0.800 |")
    assert lines[2].startswith("| full | 1 | 1 | **0.800** |")  # a tie is bold too
    assert lines[3].startswith("| broken | 1 | 1 | n/a |")
