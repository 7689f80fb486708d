"""The error catalogue (docs/errors.md): every bad input a user can give, through the real
command line.

Each entry makes the bad input in tmp_path, runs the command and checks that dmsps
answers with exit status 2 and one ``dmsps COMMAND: error: ...`` line, the last line of
the output, that names the offending file or setting and says what to fix: no traceback,
no multi-line dump. Inputs that must work (a patch larger than the volume, paths with
spaces and non-ASCII characters) are run to success. A row of docs/errors.md per test.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from dmsps.presets import preset
from tests.conftest import make_tiny_dataset
from tests.support import AFFINE, nib_save, random_case, run_cli

#: A tiny, fast 2D training run (seconds on one CPU thread).
TRAIN = [
    "--preset",
    "demo",
    "--iterations",
    "2",
    "--val-interval",
    "2",
    "--batch-size",
    "2",
    "--patch-size",
    "32",
    "--features",
    "4,8,16,32,64",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
]

#: The same for the 3D network on patches.
TRAIN_3D = [
    *TRAIN[: TRAIN.index("--patch-size")],
    "--spatial-dims",
    "3",
    "--features",
    "4,8,16",
    "--norm",
    "instance",
    "--join",
    "concat",
    "--head-kernel",
    "1",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
]


def fails(capsys, *argv, names: str | Path | None, fix: Sequence[str] = ()) -> str:
    """Run ``dmsps ARGV`` and expect a user error: exit 2 and a single error line, the
    last of the output, that names ``names`` and holds every key word of ``fix``."""
    code, out = run_cli(capsys, *argv)
    # Progress bars end their lines with \r: split on both so they do not join the error.
    lines = [ln for ln in out.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert code == 2, out
    assert len(errors) == 1 and lines[-1] == errors[0], out
    line = errors[0]
    assert line.startswith(f"dmsps {argv[0]}: error: "), line
    if names is not None:
        assert str(names) in line, line
    for word in fix:
        assert word in line, f"{word!r} not in {line!r}"
    return line


def nifti_source(root: Path, cases: int = 4) -> Path:
    """Images, labels and scribbles of random cases, as `dmsps import nifti` reads them."""
    for i in range(cases):
        image, label, scribble = random_case(i)
        nib_save(root / "images" / f"c{i}.nii.gz", image)
        nib_save(root / "labels" / f"c{i}.nii.gz", label)
        nib_save(root / "scribbles" / f"c{i}.nii.gz", scribble.astype(np.uint8))
    return root


def rewrite(path: Path, change) -> None:
    """Replace a NIfTI's array with ``change(array)``; the header's affine is kept."""
    img = nib.load(path)
    data = change(np.asanyarray(img.dataobj))
    nib.save(nib.Nifti1Image(data, img.affine), path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2-iteration checkpoint of the tiny (one-channel, 2D) dataset, for predict."""
    from dmsps.cli import main

    root = tmp_path_factory.mktemp("trained")
    data = make_tiny_dataset(root / "data")
    assert main(["train", str(data), "--out", str(root / "run"), *TRAIN]) == 0
    return root / "run" / "checkpoints" / "best.pt"


# === the dataset folder ==================================================================
def test_empty_dataset_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    fails(
        capsys,
        *("train", tmp_path / "empty", "--out", tmp_path / "run", *TRAIN),
        names=tmp_path / "empty",
        fix=["dataset folder is empty", "dmsps import"],
    )


def test_missing_dataset_folder(tmp_path, capsys):
    fails(
        capsys,
        *("train", tmp_path / "nope", "--out", tmp_path / "run", *TRAIN),
        names=tmp_path / "nope",
        fix=["dataset folder not found", "check the path"],
    )


def test_malformed_dataset_json(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "dataset.json"
    path.write_text('{"name": "tiny",\n "labels": {"background": 0,}\n')
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["malformed JSON", "line 2 column", "fix the syntax"],
    )


def test_malformed_splits_json(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "splits.json"
    path.write_text('{"train": ["case000" "case001"]}')
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["malformed JSON", "line 1 column", "fix the syntax"],
    )


# === images, labels and scribbles =========================================================
def test_image_without_scribble(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "scribblesTr" / "case001.nii.gz"
    path.unlink()
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["needs a scribble", "'test' in splits.json"],
    )


def test_image_scribble_shape_mismatch(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "scribblesTr" / "case001.nii.gz"
    rewrite(path, lambda a: a[:16])
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["shape (3, 32, 16) differs", "resample"],
    )


def test_image_label_spacing_mismatch(tmp_path, capsys):
    src = nifti_source(tmp_path / "src")
    label = src / "labels" / "c1.nii.gz"
    nib_save(label, random_case(1)[1], AFFINE @ np.diag([1.0, 1.0, 0.5, 1.0]))
    fails(
        capsys,
        *("import", "nifti", src, tmp_path / "data"),
        names=label,
        fix=["spacing (4.0, 1.4, 1.4) mm differs", "resample"],
    )


def test_image_label_orientation_mismatch(tmp_path, capsys):
    src = nifti_source(tmp_path / "src")
    label = src / "labels" / "c1.nii.gz"
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = 9  # same spacing and extent, x axis reversed
    nib_save(label, random_case(1)[1], AFFINE @ flip_x)
    fails(
        capsys,
        *("import", "nifti", src, tmp_path / "data"),
        names=label,
        fix=["orientation PLS differs", "ALS", "reorient"],
    )


def test_label_value_out_of_range(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "labelsTr" / "case004.nii.gz"  # a validation case
    rewrite(path, lambda a: np.where(a == 3, 7, a).astype(np.uint8))
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["label values 7 outside 0..3", "background, RV, Myo, LV", "fix the label"],
    )


def test_scribble_value_out_of_range(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "scribblesTr" / "case001.nii.gz"
    rewrite(path, lambda a: np.where(a == 3, 9, a).astype(np.uint8))
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["scribble values 9 outside 0..3", "4 for unannotated", "fix the scribble"],
    )


def test_label_value_the_source_format_does_not_define(tmp_path, capsys):
    """WORD maps nine of its organs to background: a value it does not define at all
    (a corrupt or foreign file) must not vanish into background with them."""
    from tests.data.importers.sources import write_word_source

    src = tmp_path / "WORD-V0.1.0"
    write_word_source(src)
    path = src / "labelsVal" / "word_0003.nii.gz"
    rewrite(path, lambda a: np.where(a == 8, 40, a).astype(np.uint8))
    fails(
        capsys,
        *("import", "word", src, tmp_path / "data"),
        names=path,
        fix=["label values 40 are not WORD labels (0..16)", "fix the file"],
    )
    assert not (tmp_path / "data").exists()


def test_release_scribble_whose_unannotated_value_cannot_be_told(tmp_path, capsys):
    """WORD's own scribbles: the unannotated value is read off each file, the one value
    that is no WORD label; a file holding two such values is refused, not guessed."""
    from tests.data.importers.sources import word_scribble, write_word_source

    src = tmp_path / "WORD-V0.1.0"
    write_word_source(src, scribbles=True)
    path = src / "scribblesTr" / "word_0001.nii.gz"
    # NIfTI arrays are (X, Y, Z): 200 from x = 50 on, beside the file's 255
    rewrite(path, lambda a: np.where(np.arange(a.shape[0])[:, None, None] < 50, a, 200))
    assert (word_scribble(0)[..., :50] == 255).any()
    fails(
        capsys,
        *("import", "word", src, tmp_path / "data"),
        names=path,
        fix=["scribble values 200, 255 are not WORD labels", "--scribble-unannotated V"],
    )
    assert not (tmp_path / "data").exists()


def test_no_annotated_voxel_in_any_training_case(tiny_dataset, tmp_path, capsys):
    for path in (tiny_dataset / "scribblesTr").iterdir():
        rewrite(path, lambda a: np.full_like(a, 4))
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=tiny_dataset / "scribblesTr",
        fix=["no training scribble has an annotated voxel", "draw scribbles", "--ignore-value"],
    )


@pytest.mark.parametrize(("bad", "count"), [(np.nan, "NaN and 0 infinite"), (np.inf, "0 NaN")])
def test_non_finite_intensities(tiny_dataset, tmp_path, capsys, bad, count):
    path = tiny_dataset / "imagesTr" / "case001_0000.nii.gz"
    rewrite(path, lambda a: np.where(a > 0.85, bad, a).astype(np.float32))
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=[count, "replace them with finite numbers"],
    )


def test_4d_image_where_3d_is_expected(tiny_dataset, tmp_path, capsys):
    path = tiny_dataset / "imagesTr" / "case001_0000.nii.gz"
    rewrite(path, lambda a: np.stack([a, a], -1).astype(np.float32))
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN),
        names=path,
        fix=["got 4D shape (32, 32, 3, 2)", "one 3D file per channel"],
    )


def _random_bytes(real: bytes) -> bytes:
    return np.random.default_rng(0).bytes(2000)


def _first_half(real: bytes) -> bytes:
    return real[: len(real) // 2]


def _png(real: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)


def _text(real: bytes) -> bytes:
    return b"patient 12, short axis, see the PACS\n"


def _gzipped_text(real: bytes) -> bytes:
    return gzip.compress(b"not a NIfTI header at all" * 20)


DAMAGED = ["cannot read NIfTI", "copy or export it again"]


@pytest.mark.parametrize(
    ("corrupt", "fix"),
    [
        (_random_bytes, [*DAMAGED, "not a gzip file"]),
        (_first_half, [*DAMAGED, "Compressed file ended"]),
        (_gzipped_text, [*DAMAGED, "Cannot work out file type"]),
        (_png, ["holds a PNG image, not NIfTI", "convert it to NIfTI"]),
        (_text, ["holds text, not NIfTI", "convert it to NIfTI"]),
    ],
    ids=["random-bytes", "truncated", "gzipped-text", "png-bytes", "text"],
)
def test_unreadable_nifti(trained, tiny_dataset, tmp_path, capsys, corrupt, fix):
    src = tmp_path / "in"
    src.mkdir()
    path = src / "case006_0000.nii.gz"
    real = (tiny_dataset / "imagesTs" / "case006_0000.nii.gz").read_bytes()
    path.write_bytes(corrupt(real))
    fails(
        capsys,
        *("predict", trained, src, tmp_path / "pred", "--device", "cpu", "--quiet"),
        names=path,
        fix=fix,
    )


# === checkpoints ========================================================================
def test_wrong_number_of_channels_for_checkpoint(trained, tiny_dataset, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    image = tiny_dataset / "imagesTs" / "case006_0000.nii.gz"
    shutil.copy(image, src / "case006_0000.nii.gz")
    shutil.copy(image, src / "case006_0001.nii.gz")
    fails(
        capsys,
        *("predict", trained, src, tmp_path / "pred", "--device", "cpu", "--quiet"),
        names=src / "case006_0000.nii.gz",
        fix=["has channels [0, 1], the model takes 1", "one file per channel"],
    )


def test_predicting_a_release_folder_of_image_and_label_folders(
    trained, tiny_dataset, tmp_path, capsys
):
    """The WORD release root holds imagesTs/ and labelsTs/: images and labels must not be
    read together as cases (a folder of one folder per case, as in BraTS, is)."""
    src = tmp_path / "WORD-V0.1.0"
    for part in ("imagesTs", "labelsTs"):
        (src / part).mkdir(parents=True)
        shutil.copy(tiny_dataset / "imagesTs" / "case006_0000.nii.gz", src / part / "w1.nii.gz")
    fails(
        capsys,
        *("predict", trained, src, tmp_path / "pred", "--device", "cpu", "--quiet"),
        names=src,
        fix=["its folders imagesTs, labelsTs hold some", "pass the folder of images"],
    )


def test_checkpoint_of_other_architecture_for_init_from(trained, tiny_dataset, tmp_path, capsys):
    args = [a if a != "4,8,16,32,64" else "8,16,32,64,128" for a in TRAIN]
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", "--init-from", trained, *args),
        names=trained,
        fix=["architecture differs", "features [4, 8, 16, 32, 64] there", "same network"],
    )


def test_checkpoint_weights_that_do_not_fit(trained, tiny_dataset, tmp_path, capsys):
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.dim() == 4)
    ckpt["model"][name] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    fails(
        capsys,
        *("predict", path, tiny_dataset / "imagesTs", tmp_path / "pred", "--device", "cpu"),
        names=path,
        fix=["weights do not fit", f"size mismatch for {name}", "as training wrote it"],
    )


def test_stage2_init_from_is_set_by_the_pipeline(trained, tiny_dataset, tmp_path, capsys):
    fails(
        capsys,
        *("run", tiny_dataset, "--out", tmp_path / "run", "--preset", "demo", "--quiet"),
        *("--set", f"stage2.init_from={trained}"),
        names="stage2.init_from",
        fix=["set by the pipeline", "dmsps train --stage 2 --init-from"],
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_truncated_checkpoint(trained, tiny_dataset, tmp_path, capsys):
    path = tmp_path / "best.pt"
    data = trained.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    fails(
        capsys,
        *("predict", path, tiny_dataset / "imagesTs", tmp_path / "pred", "--device", "cpu"),
        names=path,
        fix=["not a readable dmsps checkpoint", "truncated or corrupt", "copy it again"],
    )


# === settings ===========================================================================
def test_unknown_preset(tiny_dataset, tmp_path, capsys):
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", "--preset", "acdc-fast"),
        names="'acdc-fast'",
        fix=["unknown preset", "choose from demo,"],
    )


def test_a_folder_planned_for_another_preset(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    plan = dataclasses.replace(preset("acdc-3d"), preset="word-cpu")
    (out / "plan.json").write_text(json.dumps(dataclasses.asdict(plan)))
    fails(
        capsys,
        *("run", tiny_dataset, "--out", out, "--preset", "brats-cpu"),
        names="plan.json",
        fix=["holds a plan for 'word-cpu', not 'brats-cpu'", "new --out folder"],
    )


def test_unknown_method(tiny_dataset, tmp_path, capsys):
    fails(
        capsys,
        *("train", tiny_dataset, "--out", tmp_path / "run", *TRAIN, "--method", "dmps"),
        names="'dmps'",
        fix=["unknown method", "choose from pce, dmsps"],
    )


def test_a_value_only_expand_checked_is_refused_by_run_too(tiny_dataset, tmp_path, capsys):
    """One check per settings type: `run` refuses what `expand` refuses, before it writes."""
    out = tmp_path / "run"
    fails(
        capsys,
        *("run", tiny_dataset, "--out", out, "--preset", "demo", "--set", "expand.threshold=5"),
        names="expand",
        fix=["threshold must be in (0, 1]", "got 5.0"],
    )
    assert not out.exists()


def test_a_corrupt_or_hand_edited_config_json_names_the_file(tiny_dataset, tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"preset": "demo", "stage1": {"lr": "fast"}}')
    fails(
        capsys,
        *("run", tiny_dataset, "--out", tmp_path / "run", "--preset", bad),
        names=bad,
        fix=["stage1.lr must be float, not 'fast'"],
    )
    bad.write_text('{"preset": "demo", "stage1": {')
    fails(
        capsys,
        *("run", tiny_dataset, "--out", tmp_path / "run", "--preset", bad),
        names=bad,
        fix=["not valid JSON"],
    )


def test_an_optional_extra_that_is_not_installed_is_named(
    tiny_dataset, tmp_path, capsys, monkeypatch
):
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    assert run_cli(capsys, "train", tiny_dataset, "--out", tmp_path / "run", *TRAIN)[0] == 0
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    fails(
        capsys,
        *("export", ckpt, "--onnx", tmp_path / "m.onnx"),
        names="'onnx'",
        fix=["ONNX export needs the optional 'onnx' packages", 'pip install "dmsps[onnx]"'],
    )


def test_training_into_a_folder_made_with_other_settings(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", tiny_dataset, "--out", out, *TRAIN)[0] == 0
    fails(
        capsys,
        *("train", tiny_dataset, "--out", out, *TRAIN, "--lr", "0.01"),
        names=out,
        fix=["other settings", "lr: 0.03 -> 0.01", "new output folder"],
    )


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (
            ["import", "brats2020", "SRC", "OUT", "--scribble-density", "0.5"],
            ["--scribble-density 0.5", "authors' style draws whole strokes", "dmsps"],
        ),
        (
            ["scribble", "SRC", "OUT", "--from-scribbles", "--scribble-style", "authors"],
            ["--scribble-style authors", "--from-scribbles", "leave one of the two out"],
        ),
    ],
    ids=["density", "from-scribbles"],
)
def test_authors_scribble_style_with_an_option_it_has_no_use_for(tmp_path, capsys, argv, fix):
    """The authors' scribble style draws whole strokes from labels: a stroke density, or
    thinning existing scribbles, cannot go with it."""
    from tests.data.importers.sources import write_brats_source

    write_brats_source(tmp_path / "src")
    argv = [{"SRC": tmp_path / "src", "OUT": tmp_path / "out"}.get(a, a) for a in argv]
    fails(capsys, *argv, names=fix[0], fix=fix[1:])  # names the option
    assert not (tmp_path / "out").exists()


def test_unknown_setting_name(tiny_dataset, tmp_path, capsys):
    fails(
        capsys,
        *("run", tiny_dataset, "--out", tmp_path / "run", "--preset", "demo"),
        *("--set", "stage1.iteration=5"),
        names="'stage1.iteration'",
        fix=["unknown config field", "known here: spatial_dims, network", "iterations"],
    )


@pytest.mark.parametrize(
    "argv",
    [["run", "--set", "stage1.iterations=abc"], ["train", *TRAIN, "--iterations", "abc"]],
    ids=["run-set", "train-option"],
)
def test_setting_of_the_wrong_type(tiny_dataset, tmp_path, capsys, argv):
    line = fails(
        capsys,
        *(argv[0], tiny_dataset, "--out", tmp_path / "run", *argv[1:]),
        names="iterations: 'abc'",
        fix=["bad value for", "expected int"],
    )
    assert not (tmp_path / "run").exists(), line  # refused before any work


# === output folders =====================================================================
def _output_commands(trained: Path, data: Path, src: Path, out: Path) -> dict[str, list]:
    """One command per kind of output: a run folder, label maps, a dataset."""
    return {
        "train": ["train", data, "--out", out, *TRAIN],
        "predict": ["predict", trained, data / "imagesTs", out, "--device", "cpu", "--quiet"],
        "import": ["import", "nifti", src, out],
    }


@pytest.mark.parametrize("command", ["train", "predict", "import"])
def test_output_folder_that_cannot_be_created(trained, tiny_dataset, tmp_path, capsys, command):
    """A folder below a regular file cannot be made, whoever runs the test (root too)."""
    blocker = tmp_path / "results.txt"
    blocker.write_text("a file, not a folder\n")
    out = blocker / "run"
    argv = _output_commands(trained, tiny_dataset, nifti_source(tmp_path / "src"), out)[command]
    fails(
        capsys,
        *argv,
        names=out,
        fix=["part of this path is a file, not a folder", "choose another path"],
    )


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root can write anywhere: file permissions cannot refuse it (the folder-below-a-"
    "file test covers an uncreatable output folder for root too)",
)
def test_output_folder_without_write_permission(tiny_dataset, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        fails(
            capsys,
            *("train", tiny_dataset, "--out", locked / "run", *TRAIN),
            names=locked / "run",
            fix=["permission denied", "choose a folder you can write to"],
        )
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("command", ["train", "predict", "import"])
def test_output_folder_path_is_an_existing_file(trained, tiny_dataset, tmp_path, capsys, command):
    out = tmp_path / "results.txt"
    out.write_text("a file, not a folder\n")
    argv = _output_commands(trained, tiny_dataset, nifti_source(tmp_path / "src"), out)[command]
    fails(capsys, *argv, names=out, fix=["exists and is not a folder", "choose another"])
    assert out.read_text() == "a file, not a folder\n"  # left as it was


# === inputs that must work ===============================================================
def test_patch_larger_than_the_volume_is_padded(tiny_dataset_3d, tmp_path, capsys):
    """Volumes of 8 x 32 x 32 voxels, patches of 16 x 48 x 48: training pads the patches
    (image 0, maps unannotated) and the sliding window pads the volume; no error."""
    run = tmp_path / "run"
    code, out = run_cli(
        capsys, "train", tiny_dataset_3d, "--out", run, *TRAIN_3D, "--patch-size", "16,48,48"
    )
    assert code == 0 and "complete: 2 iterations" in out, out
    ckpt = run / "checkpoints" / "best.pt"
    code, out = run_cli(
        capsys, "predict", ckpt, tiny_dataset_3d, tmp_path / "pred", "--device", "cpu", "--quiet"
    )
    assert code == 0, out
    pred = nib.load(tmp_path / "pred" / "case004.nii.gz")
    image = nib.load(tiny_dataset_3d / "imagesTs" / "case004_0000.nii.gz")
    assert pred.shape == image.shape == (32, 32, 8)


def test_paths_with_spaces_and_non_ascii_characters(tmp_path, capsys):
    """import -> train -> predict -> evaluate under "my data/ünïcode", all succeeding."""
    home = tmp_path / "my data" / "ünïcode"
    src = nifti_source(home / "source files")
    data, run, pred = home / "dätaset 1", home / "rün 1", home / "prédictions 1"
    code, out = run_cli(capsys, "import", "nifti", src, data)
    assert code == 0 and "imported 4 cases" in out, out
    code, out = run_cli(capsys, "train", data, "--out", run, *TRAIN)
    assert code == 0 and "complete: 2 iterations" in out, out
    ckpt = run / "checkpoints" / "best.pt"
    code, out = run_cli(
        capsys, "predict", ckpt, data, pred, "--split", "val", "--device", "cpu", "--quiet"
    )
    assert code == 0 and "wrote 1 label map(s)" in out, out
    (case,) = json.loads((data / "splits.json").read_text())["val"]
    assert (pred / f"{case}.nii.gz").is_file()
    code, out = run_cli(capsys, "evaluate", pred, data, "--out", home / "mëtrics")
    assert code == 0 and (home / "mëtrics" / "summary.json").is_file(), out


@pytest.mark.parametrize("command", ["train", "run"])
def test_output_folder_another_run_is_writing_to(tiny_dataset, tmp_path, capsys, command):
    from dmsps.io.lock import sole_writer

    out = tmp_path / "run"
    argv = (command, tiny_dataset, "--out", out, *(TRAIN if command == "train" else ()))
    if command == "run":
        argv += ("--preset", "demo", "--set", "stage1.iterations=2", "--set", "stage2.iterations=2")
    with sole_writer(out):  # held as a second terminal's run would hold it
        fails(capsys, *argv, names=out, fix=["another dmsps process is writing", "wait for it"])
    assert list(out.iterdir()) == []
