"""Contract every registered importer keeps: a source of its layout imports into a dataset
that passes check-data, its input is never modified, a non-empty output is refused.

Each importer needs an entry in ``SOURCES`` (a tiny source writer returning the
command-line arguments that import it, with OUT for the output folder): a new importer
without one fails here, so none ships untested.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from dmsps.data.check import check_dataset
from dmsps.data.importers import IMPORTERS
from tests.data.importers.sources import write_brats_source, write_word_source
from tests.support import nib_save, random_case, run_cli


def _acdc_h5(root: Path) -> list[str]:
    for i, case in enumerate(["patient001_frame01", "patient002_frame01", "patient003_frame01"]):
        image, label, scribble = random_case(i)
        root.joinpath("volumes").mkdir(parents=True, exist_ok=True)
        with h5py.File(root / "volumes" / f"{case}.h5", "w") as f:
            f["image"], f["label"], f["scribble"] = image, label, scribble
    (root / "train.txt").write_text("patient001_frame01\n")
    (root / "val.txt").write_text("patient002_frame01\n")
    (root / "test.txt").write_text("patient003_frame01\n")
    return [str(root), "OUT"]


def _acdc(root: Path) -> list[str]:
    for p in range(1, 4):
        case = f"patient{p:03d}_frame01"
        image, label, scribble = random_case(p)
        nib_save(root / f"patient{p:03d}" / f"{case}.nii.gz", (image * 100).astype(np.int16))
        nib_save(root / f"patient{p:03d}" / f"{case}_gt.nii.gz", label)
        nib_save(root / f"patient{p:03d}" / f"{case}_scribble.nii.gz", scribble.astype(np.uint8))
    return [str(root), "OUT", "--val-fraction", "0.34", "--test-fraction", "0.0"]


def _nifti(root: Path) -> list[str]:
    for i in range(3):
        image, label, _ = random_case(10 + i)
        nib_save(root / "images" / f"case{i}_0000.nii.gz", image)
        nib_save(root / "labels" / f"case{i}.nii.gz", label)
    return [str(root), "OUT", "--simulate-scribbles", "--class-names", "bg,a,b,c"]


def _word(root: Path) -> list[str]:
    write_word_source(root, scribbles=True)  # the release's own scribblesTr/ too
    return [str(root), "OUT"]


def _brats(root: Path) -> list[str]:
    write_brats_source(root)
    return [str(root), "OUT"]


SOURCES: dict[str, Callable[[Path], list[str]]] = {
    "acdc-h5": _acdc_h5,
    "acdc": _acdc,
    "nifti": _nifti,
    "word": _word,
    "brats2020": _brats,
}


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_every_importer_has_a_tiny_source_here():
    assert set(IMPORTERS) == set(SOURCES), "add a source writer for each new importer"


@pytest.mark.parametrize("name", sorted(IMPORTERS))
def test_importer_contract(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "import", name, "--help")
    assert exit_.value.code == 0 and IMPORTERS[name].help
    src = tmp_path / "source"
    args = SOURCES[name](src)
    before = _digest(src)
    out_dir = tmp_path / "data set ü"  # spaces and non-ASCII in the output path
    args = [str(out_dir) if a == "OUT" else a for a in args]
    code, text = run_cli(capsys, "import", name, *args)
    assert code == 0, text
    assert _digest(src) == before, "an importer modified its source"
    report = check_dataset(out_dir)
    assert report.ok, report.problem_lines()
    meta = json.loads((out_dir / "dataset.json").read_text())
    assert meta["labels"]["ignore"] == len(meta["labels"]) - 1
    splits = json.loads((out_dir / "splits.json").read_text())
    assert splits["train"], "no training case"
    code, text = run_cli(capsys, "import", name, *args)
    assert code == 2 and "not empty" in text
