"""Reuse checks of compare's run folders (the end-to-end command is in tests/commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dmsps.config import PRESETS, apply_overrides
from dmsps.data.layout import Dataset
from dmsps.errors import DmspsError
from dmsps.pipeline.compare import check_before_training, plan_runs, stage1_record


def _one_run(out: Path, *overrides: str):
    base = apply_overrides(PRESETS["demo"](), list(overrides))
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

    # A real difference, here a setting that is not at its default, is still refused.
    changed = _one_run(tmp_path / "cmp", "stage1.encoder_dropout=0,0,0,0,0")
    with pytest.raises(DmspsError, match="encoder_dropout"):
        check_before_training(Dataset(tiny_dataset), changed, "val")
