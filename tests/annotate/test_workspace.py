"""The page's view of a dataset: slices, checked and atomic scribble saves, bounded memory."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dmsps.annotate.workspace import (
    ByteCache,
    RequestError,
    Workspace,
    take_slice,
)
from dmsps.data.layout import cardiac_meta
from dmsps.io.atomic import write_json
from tests.support import AFFINE, nib_save


def make_dataset(root: Path, shape=(3, 12, 10), ending=".nii.gz", affine=AFFINE) -> Path:
    """One training case 'c' on a rotated, anisotropic grid, with a label, no scribble."""
    meta = cardiac_meta("rotated")
    meta.file_ending = ending
    rng = np.random.default_rng(0)
    nib_save(root / "imagesTr" / f"c_0000{ending}", rng.random(shape, dtype=np.float32), affine)
    nib_save(root / "labelsTr" / f"c{ending}", rng.integers(0, 4, shape).astype(np.uint8), affine)
    write_json(root / "splits.json", {"train": ["c"], "val": [], "test": []})
    write_json(root / "dataset.json", meta.to_json())
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def read_zyx(path: Path) -> np.ndarray:
    return np.transpose(np.asanyarray(nib.load(str(path)).dataobj), (2, 1, 0))


def test_byte_cache_evicts_least_recent_and_loads_once():
    cache = ByteCache(100)
    calls = []

    def loader(key, size):
        def load():
            calls.append(key)
            time.sleep(0.05)
            return key, size

        return load

    threads = [threading.Thread(target=cache.get, args=("a", loader("a", 40))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"]
    cache.get("b", loader("b", 40))
    cache.get("a", loader("a", 40))  # a is now the most recent
    cache.get("c", loader("c", 40))  # over 100: b goes
    assert cache.keys() == ["a", "c"] and cache.nbytes == 80
    cache.get("big", loader("big", 500))  # alone over the budget: kept alone
    assert cache.keys() == ["big"]


def test_take_slice_planes():
    v = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert take_slice(v, "axial", 1).shape == (3, 4)
    assert take_slice(v, "coronal", 2).tolist() == v[:, 2, :].tolist()
    assert take_slice(v, "sagittal", 3).tolist() == v[:, :, 3].tolist()


def test_save_keeps_the_grid_writes_atomically_and_backs_up(tmp_path):
    root = make_dataset(tmp_path / "data")
    untouched = {k: v for k, v in snapshot(root).items() if k.startswith(("images", "labels"))}
    ws = Workspace(root)
    result = ws.save_scribble(
        "c", {"shape": [3, 12, 10], "strokes": [{"value": 2, "voxels": [1, 4, 5, 1, 4, 6]}]}
    )
    assert result["voxels"] == 2 and result["status"]["slices_per_class"] == [0, 0, 1, 0]
    target = root / "scribblesTr" / "c.nii.gz"
    img = nib.load(str(target))
    np.testing.assert_allclose(img.affine, AFFINE)
    assert img.get_data_dtype() == np.uint8
    arr = read_zyx(target)
    expected = np.full((3, 12, 10), 4)
    expected[1, 4, 5:7] = 2
    np.testing.assert_array_equal(arr, expected)
    assert not (root / "scribblesTr.bak").exists()  # nothing to back up the first time
    first = target.read_bytes()
    ws.save_scribble(
        "c", {"strokes": [{"value": 4, "voxels": [1, 4, 5]}, {"value": 0, "voxels": [0, 0, 0]}]}
    )
    assert (root / "scribblesTr.bak" / "c.nii.gz").read_bytes() == first
    arr = read_zyx(target)
    assert arr[1, 4, 5] == 4 and arr[1, 4, 6] == 2 and arr[0, 0, 0] == 0
    assert (arr != 4).sum() == 2
    after = {k: v for k, v in snapshot(root).items() if k.startswith(("images", "labels"))}
    assert after == untouched
    assert not [p for p in root.rglob(".*")]  # no temporary left behind


@pytest.mark.parametrize(
    ("case", "payload", "status", "message"),
    [
        ("../c", {"strokes": []}, 404, "no case '../c'"),
        ("imagesTr/c_0000", {"strokes": []}, 404, "no case"),
        ("c", {"strokes": [{"value": 5, "voxels": [0, 0, 0]}]}, 400, "class 5 is not in dataset"),
        ("c", {"strokes": [{"value": -1, "voxels": [0, 0, 0]}]}, 400, "class -1"),
        ("c", {"strokes": [{"value": 1, "voxels": [0, 0, 10]}]}, 400, "outside the image"),
        ("c", {"strokes": [{"value": 1, "voxels": [0, -1, 0]}]}, 400, "outside the image"),
        ("c", {"strokes": [{"value": 1, "voxels": [0, 1]}]}, 400, "triples"),
        ("c", {"strokes": [{"value": 1, "voxels": [0, 1, 2.5]}]}, 400, "triples"),
        ("c", {"strokes": [{"value": True, "voxels": [0, 1, 2]}]}, 400, "class True"),
        ("c", {"strokes": {"value": 1}}, 400, "must be a list"),
        ("c", {"shape": [3, 12, 11], "strokes": []}, 400, "drawn on a"),
        ("c", {"strokes": [], "path": "/etc"}, 400, "unknown field"),
        ("c", [1, 2], 400, "JSON object"),
    ],
)
def test_refusals_write_nothing(tmp_path, case, payload, status, message):
    root = make_dataset(tmp_path / "data")
    ws = Workspace(root)
    ws.save_scribble("c", {"strokes": [{"value": 1, "voxels": [0, 0, 0]}]})
    before = snapshot(root)
    # A good stroke before the bad one must not be applied either.
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("strokes"), list)
        and payload["strokes"]
    ):
        payload = {**payload, "strokes": [{"value": 3, "voxels": [2, 2, 2]}, *payload["strokes"]]}
    with pytest.raises(RequestError, match=message) as info:
        ws.save_scribble(case, payload)
    assert info.value.status == status
    assert snapshot(root) == before


def test_two_saves_at_once_leave_one_whole_file(tmp_path):
    root = make_dataset(tmp_path / "data")
    shared = Workspace(root)
    other = Workspace(root)  # a second server on the same dataset

    def saves(ws, value, row):
        for x in range(6):
            ws.save_scribble("c", {"strokes": [{"value": value, "voxels": [1, row, x]}]})

    threads = [
        threading.Thread(target=saves, args=(shared, 1, 2)),  # two tabs of one server
        threading.Thread(target=saves, args=(shared, 2, 5)),
        threading.Thread(target=saves, args=(other, 3, 7)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    arr = read_zyx(root / "scribblesTr" / "c.nii.gz")  # it loads: one whole file
    # Saves are serialised (a lock per case, and a lock on the folder between
    # processes), so no stroke of any of them is lost.
    assert (arr[1, 2, :6] == 1).all() and (arr[1, 5, :6] == 2).all()
    assert (arr[1, 7, :6] == 3).all() and (arr != 4).sum() == 18


def test_slices_and_status(tmp_path):
    root = make_dataset(tmp_path / "data", shape=(4, 6, 5))
    ws = Workspace(root)
    image = nib.load(str(root / "imagesTr" / "c_0000.nii.gz")).get_fdata(dtype=np.float32)
    zyx = np.transpose(image, (2, 1, 0))
    np.testing.assert_array_equal(ws.slice("c", "image", "sagittal", 3), zyx[:, :, 3])
    label = read_zyx(root / "labelsTr" / "c.nii.gz")
    np.testing.assert_array_equal(ws.slice("c", "label", "coronal", 5), label[:, 5, :])
    with pytest.raises(RequestError, match=r"outside 0\.\.4"):
        ws.slice("c", "image", "sagittal", 5)
    with pytest.raises(RequestError, match="unknown plane"):
        ws.slice("c", "image", "oblique", 0)
    with pytest.raises(RequestError, match="no model"):
        ws.slice("c", "prediction", "axial", 0)
    assert ws.status("c")["scribbled_slices"] == 0
    volume, version = ws.scribble_volume("c")
    assert volume.shape == (4, 6, 5) and (volume == 4).all() and version == "none"
    ws.save_scribble("c", {"strokes": [{"value": 0, "voxels": [3, 0, 0, 3, 1, 0]}]})
    status = ws.status("c")
    assert status["slices"] == [False, False, False, True]
    assert status["voxels_per_class"] == [2, 0, 0, 0]


def test_a_ct_sized_case_holds_bounded_memory(tmp_path):
    """512 x 512 x 200 CT (int16 on disk): the image is held once as float32, maps as
    uint8; a slice request allocates about one slice, a save about one uint8 volume."""
    shape = (200, 512, 512)
    root = tmp_path / "ct"
    meta = cardiac_meta("ct")
    meta.file_ending = ".nii"  # uncompressed: the test pays for reading, not for zlib
    ct = np.zeros(shape[::-1], np.int16)
    ct[100:400, 120:380, 40:160] = 300
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    (root / "imagesTr").mkdir(parents=True)
    nib.save(nib.Nifti1Image(ct, affine), str(root / "imagesTr" / "ct_0000.nii"))
    label = (ct > 0).astype(np.uint8)
    (root / "labelsTr").mkdir()
    nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / "ct.nii"))
    del ct, label
    write_json(root / "dataset.json", meta.to_json())
    (root / "splits.json").write_text(json.dumps({"train": ["ct"]}))
    voxels = int(np.prod(shape))
    ws = Workspace(root, cache_bytes=6 * voxels)
    tracemalloc.start()
    try:
        ws.image("ct")
        ws.label("ct")
        held = ws.cache.nbytes
        assert held == 4 * voxels + voxels  # float32 image + uint8 label, nothing else
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for plane, n in (("axial", 200), ("coronal", 512), ("sagittal", 512)):
            for index in (0, n // 2, n - 1):
                for layer in ("image", "label"):
                    ws.slice("ct", layer, plane, index)
        slice_peak = tracemalloc.get_traced_memory()[1] - base
        assert slice_peak < 4 << 20, slice_peak  # a float32 slice is 1 MB
        tracemalloc.reset_peak()
        volume, _ = ws.scribble_volume("ct")
        del volume
        ws.save_scribble("ct", {"strokes": [{"value": 1, "voxels": [100, 256, 256]}]})
        ws.scribble_volume("ct")
        save_peak = tracemalloc.get_traced_memory()[1] - base
        assert save_peak < 4 * voxels, save_peak  # a few uint8 volumes, never float/int64
    finally:
        tracemalloc.stop()
    assert ws.cache.nbytes <= 6 * voxels
