"""Every command leaves its inputs alone, never silently replaces an existing output
(reruns resume, skip or refuse; --force replaces) and writes each file atomically."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import dmsps
from dmsps.cli import main
from dmsps.io import atomic
from dmsps.io.nifti import load_volume, save_volume
from dmsps.zoo import zoo_dir
from tests.conftest import make_tiny_dataset
from tests.support import nib_save, random_case, run_cli

#: Two iterations of one stage on 32 x 32 patches: behaviour, not quality.
TINY = {
    "iterations": 2,
    "batch_size": 2,
    "patch_size": 32,
    "val_interval": 2,
    "features": "4,8,16,32,64",
    "device": "cpu",
    "threads": 1,
}
TRAIN = ["--preset", "demo", "--quiet"]
for _key, _value in TINY.items():
    TRAIN += [f"--{_key.replace('_', '-')}", str(_value)]
SETS = ["--preset", "demo", "--quiet"]
for _stage in ("stage1", "stage2"):
    for _key, _value in TINY.items():
        SETS += ["--set", f"{_stage}.{_key}={_value}"]

Snapshot = dict[str, tuple[int, str, int]]


def snapshot(*roots: Path, times: bool = True) -> Snapshot:
    """Path -> (mode, sha256 of the content or "dir", mtime in ns or 0) of every file and
    folder under ``roots`` (each a folder or a file)."""
    out: Snapshot = {}
    for root in roots:
        assert root.exists(), root
        for p in [root, *sorted(root.rglob("*"))] if root.is_dir() else [root]:
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p)] = (st.st_mode, digest, st.st_mtime_ns if times else 0)
    return out


def files_of(snap: Snapshot) -> Snapshot:
    """The files of a snapshot, without its folders."""
    return {k: v for k, v in snap.items() if v[1] != "dir"}


def untimed(snap: Snapshot) -> Snapshot:
    """A snapshot without modification times: what ``snapshot(..., times=False)`` gives."""
    return {k: (mode, digest, 0) for k, (mode, digest, _) in snap.items()}


def temporaries(folder: Path) -> list[str]:
    """Leftovers of ``atomic_path`` (``.NAME.XXXX.tmpSUFFIX``) under ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name) if folder.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, stage-1 checkpoint) shared by the commands that take a checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    data = make_tiny_dataset(root / "tiny")
    assert main(["train", str(data), "--out", str(root / "s1"), *TRAIN]) == 0
    return data, root / "s1" / "checkpoints" / "best.pt"


# === (a) inputs stay as they were; (b) reruns ====================================================
def test_import_keeps_its_source_and_refuses_a_non_empty_out(tmp_path: Path, capsys) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(5):
        image, label, scribble = random_case(i)
        nib_save(src / "images" / f"c{i}.nii.gz", image)
        nib_save(src / "labels" / f"c{i}.nii.gz", label)
        nib_save(src / "scribbles" / f"c{i}.nii.gz", scribble)
    before = snapshot(src)
    code, text = run_cli(capsys, "import", "nifti", src, out)
    assert code == 0, text
    assert snapshot(src) == before
    imported = snapshot(out)
    code, text = run_cli(capsys, "import", "nifti", src, out)
    assert code == 2 and f"{out}: output folder is not empty" in text
    assert "use --force to replace it" in text
    assert snapshot(out) == imported
    for flag in ("--force", "--overwrite"):
        code, text = run_cli(capsys, "import", "nifti", src, out, flag)
        assert code == 0, text
    assert snapshot(src) == before
    assert snapshot(out, times=False) == untimed(imported)  # the same dataset again


@pytest.mark.parametrize("command", ["check-data", "models"])
def test_read_only_commands_write_nothing(tiny_dataset: Path, capsys, command: str) -> None:
    argv, inputs = (
        ([command, tiny_dataset], tiny_dataset)
        if command == "check-data"
        else ([command], zoo_dir())
    )
    before = snapshot(inputs)
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert snapshot(inputs) == before


@pytest.mark.parametrize(
    ("source", "extra"),
    [("labelsTr", ["--seed", "1"]), ("scribblesTr", ["--from-scribbles", "--length", "0.5"])],
)
def test_scribble_keeps_inputs_and_refuses_a_used_folder(
    tiny_dataset: Path, tmp_path: Path, capsys, source: str, extra: list[str]
) -> None:
    src, out = tiny_dataset / source, tmp_path / "scribbles"
    before = snapshot(tiny_dataset)
    argv = ["scribble", src, out, *extra]
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert snapshot(tiny_dataset) == before
    written = snapshot(out)
    code, text = run_cli(capsys, *argv)  # the same again: refused, nothing touched
    assert code == 2 and f"{out / 'case000.nii.gz'}: already exists (and 5 more)" in text
    assert "use --force to replace it" in text
    assert snapshot(out) == written
    code, text = run_cli(capsys, *argv, "--force")
    assert code == 0, text
    assert snapshot(out, times=False) == untimed(written)  # seeded by file name: the same
    # A folder with files of its own: refused, then written beside them with --force.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, text = run_cli(capsys, "scribble", src, other, *extra)
    assert code == 2 and f"{other}: output folder holds other files (notes.txt)" in text
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert run_cli(capsys, "scribble", src, other, *extra, "--force")[0] == 0
    assert (other / "notes.txt").read_text() == "mine" and (other / "case000.nii.gz").is_file()
    assert snapshot(tiny_dataset) == before


def test_train_keeps_inputs_and_reruns_without_writing(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    before = snapshot(tiny_dataset)
    code, text = run_cli(capsys, "train", tiny_dataset, "--out", s1, *TRAIN)
    assert code == 0, text
    assert snapshot(tiny_dataset) == before
    done = snapshot(s1)
    code, text = run_cli(capsys, "train", tiny_dataset, "--out", s1, *TRAIN)
    assert code == 0 and text.startswith("complete: 2 iterations")  # the finished summary
    assert snapshot(s1) == done
    # Stage 2: the stage-1 checkpoint and the seed folder are inputs too.
    ckpt, seeds = s1 / "checkpoints" / "best.pt", tiny_dataset / "scribblesTr"
    stage2 = ["--stage", "2", "--init-from", ckpt, "--scribble-dir", seeds]
    code, text = run_cli(capsys, "train", tiny_dataset, "--out", s2, *TRAIN, *stage2)
    assert code == 0, text
    assert snapshot(s1) == done and snapshot(tiny_dataset) == before
    (s1 / "final.json").unlink()  # now it looks interrupted: refused without --resume
    code, text = run_cli(capsys, "train", tiny_dataset, "--out", s1, *TRAIN)
    assert code == 2 and "unfinished run; use --resume" in text


def test_expand_keeps_inputs_resumes_and_refuses_other_settings(
    trained: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    data, ckpt = trained
    inputs, out = (data, ckpt.parent), tmp_path / "seeds"
    before = snapshot(*inputs)
    argv = ["expand", ckpt, data, out, "--device", "cpu", "--quiet"]
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert snapshot(*inputs) == before
    written = snapshot(out)
    seeds = {k: v for k, v in written.items() if k.endswith(".nii.gz")}
    assert len(seeds) == 4
    code, text = run_cli(capsys, *argv)  # resumes: seeds kept, the same summary again
    assert code == 0, text
    again = snapshot(out)
    assert {k: again[k] for k in seeds} == seeds
    assert snapshot(out, times=False) == untimed(written)
    code, text = run_cli(capsys, *argv, "--threshold", "0.5")
    assert code == 2 and f"{out / 'expand_summary.json'}: holds an expansion" in text
    assert "threshold 0.1 -> 0.5" in text and "use --force to replace it" in text
    assert snapshot(out) == again
    code, text = run_cli(capsys, *argv, "--background-margin", "2")
    assert code == 2 and "background_margin 0 -> 2" in text
    code, text = run_cli(capsys, *argv, "--background-margin", "-1")
    assert code == 2 and "--background-margin must be >= 0" in text
    code, text = run_cli(capsys, *argv, "--threshold", "0.5", "--force")
    assert code == 0, text
    assert '"threshold": 0.5' in (out / "expand_summary.json").read_text()
    assert all(snapshot(out)[k][2] != seeds[k][2] for k in seeds)  # computed again
    assert snapshot(*inputs) == before


def test_predict_keeps_inputs_skips_existing_and_force_redoes(
    trained: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    data, ckpt = trained
    inputs, out = (data, ckpt.parent), tmp_path / "pred"
    before = snapshot(*inputs)
    argv = ["predict", ckpt, data, out, "--device", "cpu", "--quiet"]
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert snapshot(*inputs) == before
    written = snapshot(out)
    assert len(files_of(written)) == 2
    assert run_cli(capsys, *argv)[0] == 0
    assert snapshot(out) == written  # skipped: not even rewritten
    for flag in ("--force", "--overwrite"):
        previous = snapshot(out)
        assert run_cli(capsys, *argv, flag)[0] == 0
        redone = snapshot(out)
        assert {k: v[:2] for k, v in redone.items()} == {k: v[:2] for k, v in written.items()}
        assert all(redone[k][2] != previous[k][2] for k in files_of(written))
    assert snapshot(*inputs) == before


def test_evaluate_keeps_inputs_and_refuses_to_replace_other_results(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    pred, out = tmp_path / "pred", tmp_path / "metrics"
    shutil.copytree(tiny_dataset / "labelsTs", pred)
    inputs = (pred, tiny_dataset)
    before = snapshot(*inputs)
    argv = ["evaluate", pred, tiny_dataset, "--out", out]
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert snapshot(*inputs) == before
    reports = snapshot(out, times=False)
    assert run_cli(capsys, *argv)[0] == 0  # the same results again: fine
    assert snapshot(out, times=False) == reports
    label, geometry = load_volume(pred / "case006.nii.gz")
    save_volume(pred / "case006.nii.gz", np.zeros_like(label), geometry, np.uint8)
    written = snapshot(out)
    code, text = run_cli(capsys, *argv)  # other results: refused, nothing replaced
    assert code == 2 and f"{out / 'metrics.csv'}: holds other results" in text
    assert "use --force to replace it" in text
    assert snapshot(out) == written
    code, text = run_cli(capsys, *argv, "--force")
    assert code == 0, text
    assert snapshot(out, times=False)[str(out / "metrics.csv")] != reports[str(out / "metrics.csv")]


def test_export_keeps_the_checkpoint_and_refuses_an_existing_file(
    trained: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    _, ckpt = trained
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"an earlier export")
    before = snapshot(ckpt.parent)
    code, text = run_cli(capsys, "export", ckpt, "--onnx", onnx, "--no-check")
    assert code == 2 and f"{onnx}: already exists; use --force to replace it" in text
    assert onnx.read_bytes() == b"an earlier export"
    code, text = run_cli(capsys, "export", ckpt, "--onnx", onnx, "--no-check", "--force")
    assert code == 0, text
    assert onnx.stat().st_size > 1000 and temporaries(tmp_path) == []
    assert snapshot(ckpt.parent) == before


def test_synth_refuses_a_non_empty_folder_unless_forced(tmp_path: Path, capsys) -> None:
    out = tmp_path / "synth"
    argv = ["synth", "cardiac", out, "--cases", "3", "--size", "32", "--slices", "2"]
    assert run_cli(capsys, *argv)[0] == 0
    made = snapshot(out)
    code, text = run_cli(capsys, *argv)
    assert code == 2 and f"{out}: folder is not empty; use --force to replace it" in text
    assert snapshot(out) == made
    for flag in ("--force", "--overwrite"):
        assert run_cli(capsys, *argv, flag)[0] == 0


def _trained_files(out: Path) -> Snapshot:
    """Checkpoints, training summaries, seeds and predictions under a run or comparison."""
    paths = [*out.rglob("*.pt"), *out.rglob("final.json"), *out.rglob("seeds/*.nii.gz")]
    return snapshot(*paths, *out.rglob("predictions/**/*.nii.gz"))


def test_run_keeps_inputs_and_resumes(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    before = snapshot(tiny_dataset)
    code, text = run_cli(capsys, "run", tiny_dataset, "--out", out, *SETS)
    assert code == 0, text
    assert snapshot(tiny_dataset) == before
    done = _trained_files(out)
    assert len(done) > 10
    code, text = run_cli(capsys, "run", tiny_dataset, "--out", out, *SETS)
    assert code == 0, text
    assert _trained_files(out) == done  # nothing trained or predicted again
    code, text = run_cli(
        capsys, "run", tiny_dataset, "--out", out, *SETS, "--set", "stage1.iterations=3"
    )
    assert code == 2 and "made with different settings" in text
    assert _trained_files(out) == done and snapshot(tiny_dataset) == before


def test_compare_keeps_inputs_and_skips_finished_runs(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", tiny_dataset, "--out", out, "--methods", "pce", "--seeds", "1", *SETS]
    before = snapshot(tiny_dataset)
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert snapshot(tiny_dataset) == before
    done = _trained_files(out)
    assert done
    code, text = run_cli(capsys, *argv)
    assert code == 0, text
    assert _trained_files(out) == done and snapshot(tiny_dataset) == before


# === (c) atomic writes ============================================================================
def _setups(data: Path, ckpt: Path, tmp: Path) -> dict[str, tuple[list, Path]]:
    """Command -> (argv with --force, its output folder)."""
    pred = tmp / "pred"
    src = tmp / "src"
    image, label, scribble = random_case(0)
    for i in range(3):
        nib_save(src / "images" / f"c{i}.nii.gz", image)
        nib_save(src / "labels" / f"c{i}.nii.gz", label)
        nib_save(src / "scribbles" / f"c{i}.nii.gz", scribble)
    shutil.copytree(data / "labelsTs", pred)
    return {
        "evaluate": (
            ["evaluate", pred, data, "--out", tmp / "metrics", "--force"],
            tmp / "metrics",
        ),
        "predict": (["predict", ckpt, data, tmp / "p", "--device", "cpu", "--force"], tmp / "p"),
        "scribble": (["scribble", data / "labelsTr", tmp / "s", "--force"], tmp / "s"),
        "import": (
            ["import", "nifti", src, tmp / "d", "--force", "--val-fraction", "0.3"],
            tmp / "d",
        ),
    }


@pytest.mark.parametrize("command", ["evaluate", "predict", "scribble", "import"])
def test_a_failed_rename_leaves_the_old_file_or_nothing(
    trained: tuple[Path, Path], tmp_path: Path, capsys, monkeypatch, command: str
) -> None:
    data, ckpt = trained
    argv, out = _setups(data, ckpt, tmp_path)[command]
    staged: list[int] = []

    def interrupted_rename(src: str | Path, dst: str | Path) -> None:
        staged.append(Path(src).stat().st_size)  # the temporary is complete by now
        raise KeyboardInterrupt  # Ctrl-C (or a crash) just before the rename

    for earlier in (False, True):
        if earlier:  # then over the outputs of a finished run
            assert run_cli(capsys, *argv)[0] == 0
        before = files_of(snapshot(out)) if out.exists() else {}
        staged.clear()
        with monkeypatch.context() as m:
            m.setattr(atomic.os, "replace", interrupted_rename)
            code, text = run_cli(capsys, *argv)
        assert code == 130 and "interrupted" in text
        assert staged and staged[0] > 0
        after = files_of(snapshot(out)) if out.exists() else {}
        assert all(before.get(path) == sig for path, sig in after.items()), command
        assert temporaries(out) == []


def test_every_file_write_in_src_goes_through_atomic_path() -> None:
    """Calls that write a file (``open(.., "w")``, ``X.save``, ``write_text``, ...) sit
    inside ``with atomic_path(...)`` (save_volume, write_text and write_json do)."""
    writers = {"save", "savez", "savez_compressed", "tofile", "write_text", "write_bytes"}
    copies = {"copy", "copy2", "copyfile", "copytree", "move"}  # of shutil
    # log.csv, the training log, is appended to row by row (its rewrite on resume is atomic).
    allowed = {("training/trainer.py", "_CsvLog")}
    src = Path(dmsps.__file__).parent
    found = []

    def writes(call: ast.Call) -> bool:
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in writers and isinstance(func, ast.Attribute):  # not atomic's write_text
            return True
        if name in copies and getattr(getattr(func, "value", None), "id", "") == "shutil":
            return True
        if name != "open":
            return False
        args = call.args[1:] if isinstance(func, ast.Name) else call.args
        modes = [*args[:1], *(k.value for k in call.keywords if k.arg == "mode")]
        return any(
            isinstance(m, ast.Constant) and isinstance(m.value, str) and set(m.value) & set("wax+")
            for m in modes
        )

    def visit(node: ast.AST, path: str, inside: bool, scope: str) -> None:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and not scope:
            scope = node.name  # the outermost class or function
        if isinstance(node, ast.With):
            inside = inside or any(
                isinstance(i.context_expr, ast.Call)
                and getattr(i.context_expr.func, "id", "") == "atomic_path"
                for i in node.items
            )
        call = isinstance(node, ast.Call) and writes(node)
        if call and not inside and (path, scope) not in allowed:
            found.append(f"{path}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, path, inside, scope)

    for file in sorted(src.rglob("*.py")):
        rel = file.relative_to(src).as_posix()
        visit(ast.parse(file.read_text()), rel, False, "")
    assert found == [], f"writes that bypass dmsps.io.atomic: {found}"


def test_snapshot_sees_every_change(tmp_path: Path) -> None:
    """Content, mode, a rewrite with the same content and a new file all show."""
    (tmp_path / "a").write_text("x")
    before = snapshot(tmp_path)
    changes: list[Callable[[], object]] = [
        lambda: (tmp_path / "a").write_text("y"),
        lambda: (tmp_path / "a").chmod(0o600),
        lambda: os.utime(tmp_path / "a", ns=(1, 1)),
        lambda: (tmp_path / "b").mkdir(),
    ]
    for change in changes:
        change()
        assert snapshot(tmp_path) != before
        before = snapshot(tmp_path)
