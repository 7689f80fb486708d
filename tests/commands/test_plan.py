"""`dmsps plan` writes a settings file `dmsps run --preset` takes; `--preset auto` plans
inside the run folder once, and a resumed run keeps that plan."""

from __future__ import annotations

import json

from dmsps.presets import preset
from tests.support import run_cli

FAST = ["--set", "stage1.iterations=2", "--set", "stage2.iterations=2"]
FAST += ["--set", "stage1.val_interval=2", "--set", "stage2.val_interval=2"]


def test_plan_writes_a_preset_file(tiny_dataset_3d, tmp_path, capsys):
    out = tmp_path / "plan.json"
    code, text = run_cli(capsys, "plan", tiny_dataset_3d, "--dims", "3", "--out", out, "--quiet")
    assert code == 0, text
    cfg = preset(out)
    assert cfg.stage1.spatial_dims == 3 and cfg.preset == "plan:cpu-1h:3d"
    assert cfg.stage1.target_spacing and cfg.stage1.kernel_sizes and cfg.stage1.pool_strides
    assert cfg.stage1.iterations >= 50 and cfg.stage2.iterations >= 50
    fp = json.loads((tmp_path / "plan.fingerprint.json").read_text())
    assert fp["cases"] == 4 and len(fp["channels"]) == 2
    assert "kernels" in text and "stage 1:" in text
    # The step time the iterations came from is shown and kept with the fingerprint.
    assert "step time on auto:" in text
    assert any(n.startswith("step time on auto:") for n in fp["notes"])


def test_run_with_preset_auto_plans_once_per_run_folder(tiny_dataset_3d, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["run", tiny_dataset_3d, "--out", run, "--preset", "auto", "--dims", "3", *FAST]
    code, text = run_cli(capsys, *args, "--quiet")
    assert code == 0, text
    plan = json.loads((run / "plan.json").read_text())
    saved = json.loads((run / "config.json").read_text())
    assert saved["stage1"]["kernel_sizes"] == plan["stage1"]["kernel_sizes"]
    assert saved["stage1"]["iterations"] == 2  # --set applies on top of the plan
    assert (run / "fingerprint.json").is_file() and (run / "metrics/stage2/summary.json").is_file()
    # Rerun: the saved plan is reused (no new step timing that could change iterations).
    (run / "plan.json").write_text(json.dumps({**plan, "preset": "plan:kept"}))
    code, text = run_cli(capsys, *args, "--quiet")
    assert code != 0 and "different settings" in text and "plan:kept" in text


def test_a_planned_preset_plans_once_under_its_own_name(tiny_dataset_3d, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["run", tiny_dataset_3d, "--out", run, "--preset", "word-cpu", *FAST]
    code, text = run_cli(capsys, *args, "--set", "stage1.stop_at=1", "--quiet")
    assert code == 0, text
    plan = json.loads((run / "plan.json").read_text())
    assert plan["preset"] == "word-cpu" and plan["stage1"]["spatial_dims"] == 3
    assert plan["stage1"]["kernel_sizes"] and plan["stage1"]["target_spacing"]
    fp = json.loads((run / "fingerprint.json").read_text())
    assert "preset word-cpu: planned as plan:cpu-1h:3d" in fp["notes"]
    # A folder planned for one preset is not resumed under another.
    code, text = run_cli(capsys, "run", tiny_dataset_3d, "--out", run, "--preset", "brats-cpu")
    assert code != 0 and "holds a plan for 'word-cpu', not 'brats-cpu'" in text


def test_train_plans_a_planned_preset_in_its_folder(tiny_dataset_3d, tmp_path, capsys):
    out = tmp_path / "s1"
    code, text = run_cli(
        capsys,
        "train",
        tiny_dataset_3d,
        "--out",
        out,
        "--preset",
        "brats-cpu",
        "--iterations",
        "2",
        "--val-interval",
        "2",
        "--quiet",
    )
    assert code == 0, text
    saved = json.loads((out / "config.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    assert saved["kernel_sizes"] == plan["stage1"]["kernel_sizes"] and saved["iterations"] == 2
